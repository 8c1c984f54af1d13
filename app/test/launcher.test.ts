// The `./bees` launcher's package step (app/launcher/packages.sh): it disables only the services of packages it
// just installed, and never one that was running or enabled before (a machine's own Docker keeps running).
import test from 'ava';
import { execFile } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const LIB = fileURLToPath(new URL('../launcher/packages.sh', import.meta.url));

async function bash(script: string, env: Record<string, string> = {}): Promise<string> {
  const { stdout } = await run('bash', ['-c', `set -euo pipefail; say() { :; }; source ${LIB}; ${script}`], {
    env: { ...process.env, ...env },
  });
  return stdout;
}

const lines = (s: string) => s.split('\n').filter(Boolean);

test('services_to_disable: the units of just-installed packages, minus those in use before', async (t) => {
  t.deepEqual(lines(await bash('services_to_disable zookeeper iproute2 docker.io containerd --')), [
    'zookeeper',
    'docker',
    'docker.socket',
    'containerd',
  ]);
  t.deepEqual(lines(await bash('services_to_disable zookeeper docker.io containerd -- docker docker.socket containerd')), ['zookeeper']);
  t.deepEqual(lines(await bash('services_to_disable iproute2 nftables gcc --')), [], 'packages without services touch nothing');
  t.deepEqual(lines(await bash('services_to_disable -- docker zookeeper')), [], 'nothing installed, nothing disabled');
});

// ensure_packages end to end, with dpkg, apt-get, systemctl and id replaced by scripts on PATH that log their
// arguments: which packages are "missing" and which units "run" come from the environment.
test('ensure_packages disables what it just installed and leaves a running Docker alone', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'bees-launcher-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const log = join(dir, 'calls.log');
  const fake = (name: string, body: string) =>
    writeFile(join(dir, name), `#!/bin/bash\n${body}\n`).then(() => chmod(join(dir, name), 0o755));
  await fake('dpkg', 'for p in $FAKE_MISSING; do [ "$p" = "$2" ] && exit 1; done; exit 0');
  await fake('apt-get', `echo "apt-get $*" >> ${log}`);
  await fake('id', 'echo 0');
  await fake(
    'systemctl',
    `echo "systemctl $*" >> ${log}
case "$1" in is-active|is-enabled) for u in $FAKE_ACTIVE; do [ "$u" = "$3" ] && exit 0; done; exit 3 ;; esac`,
  );
  const env = (missing: string, active: string) => ({ PATH: `${dir}:${process.env.PATH}`, FAKE_MISSING: missing, FAKE_ACTIVE: active });
  const disabled = async () => lines(await readFile(log, 'utf8').catch(() => '')).filter((l) => l.startsWith('systemctl disable'));

  // Docker runs here already (docker.io missing: say the machine has docker-ce); ZooKeeper and containerd are new.
  await bash('ensure_packages zookeeper iproute2 docker.io containerd', env('zookeeper docker.io containerd', 'docker docker.socket'));
  t.true((await readFile(log, 'utf8')).includes('apt-get install -y -qq --no-install-recommends zookeeper docker.io containerd'));
  t.deepEqual(await disabled(), ['systemctl disable --now zookeeper containerd']);

  // Nothing missing: nothing installed, no service touched.
  await rm(log, { force: true });
  await bash('ensure_packages zookeeper docker.io', env('', ''));
  t.deepEqual(lines(await readFile(log, 'utf8').catch(() => '')), []);

  // Only a package without services installed: systemctl is never asked to disable anything.
  await bash('ensure_packages iproute2 zookeeper', env('iproute2', 'zookeeper'));
  t.deepEqual(await disabled(), []);
});
