// `bees image build` end to end: the project compiled into a scratch dist/, the image tarball built from it, then
// loaded by the real runtimes that will run it (a private containerd's `ctr images import` and a private dockerd's
// `docker load`), and `bees --help` plus the datapath tools run inside the image under both.
import test from 'ava';
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { buildShim } from '../../cni/shim/build.js';
import { buildImage, productionPackages, projectRoot, type ImageReport } from '../image/build.js';
import { objectName } from '../../core/datapath/fastpath/build.js';
import { startDockerd } from '../../swarm/test/dockerd.js';

const run = promisify(execFile);
const REF = 'docker.io/midonet/bees:test';
let work: string;
let report: ImageReport;

test.before(async () => {
  work = await mkdtemp(join(tmpdir(), 'bees-imgt-'));
  const root = projectRoot();
  // The suite's type check has compiled the project already (testbed/suite.ts names its output BEES_TEST_DIST);
  // run alone, the test compiles it itself.
  const prebuilt = process.env.BEES_TEST_DIST;
  if (prebuilt && existsSync(join(prebuilt, 'app', 'main.js'))) await cp(prebuilt, join(work, 'dist'), { recursive: true });
  else await run('npx', ['tsc', '-p', join(root, 'tsconfig.json'), '--outDir', join(work, 'dist')], { cwd: root, maxBuffer: 1 << 24 });
  await buildShim(join(work, 'dist/cni/midonet'));
  report = await buildImage({ root, dist: join(work, 'dist'), ref: REF, out: join(work, 'bees.tar') });
});
test.after.always(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

async function layerListing(): Promise<string[]> {
  const index = JSON.parse((await run('tar', ['-xOf', report.out, './index.json'])).stdout) as { manifests: { digest: string }[] };
  const manifest = JSON.parse((await run('tar', ['-xOf', report.out, `./blobs/sha256/${index.manifests[0]!.digest.slice(7)}`])).stdout) as {
    layers: { digest: string }[];
  };
  const layer = join(work, 'layer.tgz');
  await run('tar', ['-xf', report.out, '-C', work, `./blobs/sha256/${manifest.layers[0]!.digest.slice(7)}`]);
  await run('mv', [join(work, 'blobs/sha256', manifest.layers[0]!.digest.slice(7)), layer]);
  return (await run('tar', ['-tzf', layer], { maxBuffer: 1 << 26 })).stdout.split('\n');
}

test('the image holds node, the built project, production modules only, the shim and the datapath tools', async (t) => {
  const files = new Set((await layerListing()).map((f) => f.replace(/^\.\//, '').replace(/\/$/, '')));
  // The entry point is wherever package.json's bin says (the CLI's home may move).
  const bin = (JSON.parse(await readFile(join(projectRoot(), 'package.json'), 'utf8')) as { bin: { bees: string } }).bin.bees;
  for (const f of [
    'usr/bin/node',
    'usr/bin/bees',
    'opt/bees/dist/cni/midonet',
    `opt/bees/${bin.replace(/^(\.\/)?/, '')}`,
    'opt/bees/node_modules/fastify/package.json',
    'usr/sbin/ip',
    'usr/sbin/nft',
    'usr/sbin/iptables',
    'usr/lib64/ld-linux-x86-64.so.2',
    'usr/lib/x86_64-linux-gnu/libc.so.6',
    // The datapath's fast path: its source, the object built from it where the agent looks, and libbpf.
    'opt/bees/dist/core/datapath/fastpath/fastpath.bpf.c',
    `var/cache/bees/bpf/${objectName()}`,
    'usr/lib/x86_64-linux-gnu/libbpf.so.1',
  ]) {
    t.true(files.has(f), `${f} in the image`);
  }
  for (const f of ['opt/bees/node_modules/ava', 'opt/bees/node_modules/typescript', 'opt/bees/node_modules/bun'])
    t.false(files.has(f), `${f} (a dev dependency) left out`);
  t.false(
    [...files].some((f) => f.startsWith('opt/bees/dist/') && f.includes('/test/')),
    'no compiled tests',
  );
  t.true(report.bytes < 120e6, `image is ${(report.bytes / 1e6).toFixed(1)} MB`);
  t.log(`image ${(report.bytes / 1e6).toFixed(1)} MB, ${report.files} files`);
  const prod = await productionPackages(projectRoot());
  t.true(prod.includes('node_modules/fastify') && !prod.includes('node_modules/ava'));
});

test('ctr images import accepts it and runs bees and the tools inside', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'ctd-'));
  const sock = join(dir, 'c.sock');
  await writeFile(
    join(dir, 'config.toml'),
    `version = 2\nroot = "${dir}/root"\nstate = "${dir}/state"\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\n  address = "${sock}"\n`,
  );
  const proc = spawn('containerd', ['--config', join(dir, 'config.toml')], { stdio: 'ignore' });
  const ctr = async (...a: string[]) =>
    (await run('ctr', ['-a', sock, '-n', 'test', ...a], { timeout: 120_000, maxBuffer: 1 << 24 })).stdout;
  try {
    for (let i = 0; !existsSync(sock); i++) {
      if (i > 600) throw new Error('containerd did not start within a minute');
      await new Promise((r) => setTimeout(r, 100));
    }
    await ctr('images', 'import', report.out);
    t.regex(await ctr('images', 'ls', '-q'), /docker\.io\/midonet\/bees:test/);
    t.regex(await ctr('run', '--rm', REF, 'bees-help', '/usr/bin/bees', '--help'), /usage: bees COMMAND/);
    t.regex(await ctr('run', '--rm', REF, 'bees-ip', '/usr/sbin/ip', '-V'), /iproute2/);
    t.regex(await ctr('run', '--rm', REF, 'bees-nft', '/usr/sbin/nft', '--version'), /nftables/);
    t.regex(await ctr('run', '--rm', REF, 'bees-ipt', '/usr/sbin/iptables', '--version'), /iptables v/);
  } finally {
    proc.kill('SIGTERM');
    await new Promise((r) => proc.once('exit', r));
    await run('umount', ['-R', join(dir, 'root')]).catch(() => undefined);
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
});

test('docker load accepts it and docker run gives bees its default entry point', async (t) => {
  const d = await startDockerd();
  try {
    t.regex(await d.docker(['load', '-i', report.out]), /Loaded image: midonet\/bees:test/);
    t.regex(await d.docker(['run', '--rm', '--network', 'none', 'midonet/bees:test', '--help']), /usage: bees COMMAND/);
    t.regex(
      await d.docker(['image', 'inspect', '-f', '{{json .Config.Entrypoint}} {{json .Config.Cmd}}', 'midonet/bees:test']),
      /\["\/usr\/bin\/bees"\] \["agent"\]/,
    );
  } finally {
    await d.stop();
  }
});
