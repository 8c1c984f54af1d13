// Shared test fixtures: temp dirs, namespaces and reference-plugin conflists, all removed in t.teardown.
import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
import type { HarnessHost } from '../../e2e/harness/index.js';
import { createNetns, randomSuffix, sh, type Netns } from '../harness/netns.js';
import { buildShim } from '../shim/build.js';
import { startHostContainerd, type HostContainerd } from '../../testbed/containerd.js';

export const REFERENCE_DIR = '/usr/lib/cni';

export async function tempDir(t: ExecutionContext, prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `${prefix}-`));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

export async function netns(t: ExecutionContext, prefix = 'cnit'): Promise<Netns> {
  const ns = await createNetns(prefix);
  t.teardown(() => ns.remove());
  return ns;
}

/** A /24 in 10.128.0.0/9 unlikely to be used by a concurrent test. */
export function randomSubnet(): { cidr: string; base: string } {
  const a = 128 + Math.floor(Math.random() * 127);
  const b = Math.floor(Math.random() * 256);
  return { cidr: `10.${a}.${b}.0/24`, base: `10.${a}.${b}` };
}

/** A bridge + host-local conflist chained with portmap, bandwidth, tuning and firewall, named uniquely. */
export async function referenceConflist(
  t: ExecutionContext,
  cniVersion: string,
): Promise<{ text: string; bridge: string; subnet: string; dataDir: string; name: string }> {
  const suffix = randomSuffix();
  const bridge = `cnib${suffix}`;
  const name = `ref-${suffix}`;
  const dataDir = await tempDir(t, 'hostlocal');
  const { cidr } = randomSubnet();
  t.teardown(() => sh('ip', ['link', 'del', bridge]).catch(() => undefined));
  const text = JSON.stringify({
    cniVersion,
    name,
    plugins: [
      {
        type: 'bridge',
        bridge,
        isGateway: true,
        ipMasq: false,
        ipam: { type: 'host-local', subnet: cidr, dataDir, routes: [{ dst: '0.0.0.0/0' }] },
      },
      { type: 'portmap', capabilities: { portMappings: true }, snat: true },
      { type: 'bandwidth', capabilities: { bandwidth: true } },
      { type: 'tuning', sysctl: { 'net.ipv4.conf.eth0.accept_local': '1' } },
      // firewall speaks 0.4.0 and later only.
      ...(cniVersion.startsWith('0.3') ? [] : [{ type: 'firewall', backend: 'iptables' }]),
    ],
  });
  return { text, bridge, subnet: cidr, dataDir, name };
}

let built: Promise<string> | undefined;

/** Builds the shipped plugin executable (the C shim, as `npm run build:cni` does) once per test process: tests run what users run. */
export function buildPlugin(): Promise<string> {
  built ??= (async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cnibin-'));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    await buildShim(join(dir, 'midonet'));
    return dir;
  })();
  return built;
}

// ---- Private container runtimes inside e2e harness hosts, for suites that mix orchestrators on one network ----

/** A busybox-static root filesystem (every applet linked, plus /pause that sleeps) as a tarball in `dir`. */
export async function busyboxRootfsTar(dir: string): Promise<string> {
  const rootfs = join(dir, 'rootfs');
  await sh('mkdir', ['-p', join(rootfs, 'bin')]);
  await sh('cp', ['/bin/busybox', join(rootfs, 'bin', 'busybox')]);
  await sh('sh', [
    '-c',
    `cd ${rootfs}/bin && for a in $(./busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$a"; done && printf '#!/bin/sh\\nexec sleep 100000\\n' > ../pause && chmod +x ../pause && tar -C ${rootfs} -cf ${dir}/rootfs.tar .`,
  ]);
  return join(dir, 'rootfs.tar');
}

/** What the runtime helpers need of a harness (e2e/harness Harness satisfies it). */
export interface RuntimeHarness {
  exec(target: HarnessHost | string, argv: string[], input?: string): Promise<{ code: number | null; stdout: string; stderr: string }>;
  spawn(target: HarnessHost | string, argv: string[], opts?: { logName?: string }): ChildProcess;
}

export interface PrivatePodman {
  host: HarnessHost;
  /** Run podman with this instance's globals inside the host; rejects with stderr on failure. */
  run(args: string[]): Promise<string>;
  /** Remove every container and pod of this podman (errors ignored). */
  close(): Promise<void>;
}

/** podman's default rlimits cannot be raised by runc here (cni/README.md): ask for less. */
export const PODMAN_ULIMITS = ['--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=512:512'];
export const PODMAN_IMAGE = 'localhost/bb:latest';

/**
 * A podman of its own (CONTAINERS_CONF, --root/--runroot/--tmpdir, vfs, CNI backend with `pluginDir` and its own
 * net.d holding `conflists`) run inside `host`, with busybox imported from `rootfsTar` as PODMAN_IMAGE.
 */
export async function startPodman(
  h: RuntimeHarness,
  host: HarnessHost,
  opts: { dir: string; pluginDir: string; conflists: { name: string }[]; rootfsTar: string },
): Promise<PrivatePodman> {
  const confDir = join(opts.dir, 'net.d');
  await mkdir(confDir, { recursive: true });
  await writeFile(
    join(opts.dir, 'containers.conf'),
    [
      '[containers]',
      'default_ulimits=["nofile=1024:1024", "nproc=512:512"]',
      '[network]',
      'network_backend="cni"',
      `cni_plugin_dirs=["${opts.pluginDir}", "/usr/lib/cni"]`,
      `network_config_dir="${confDir}"`,
      '[engine]',
      'cgroup_manager="cgroupfs"',
      'events_logger="file"',
      `events_logfile_path="${opts.dir}/events.log"`,
      'runtime="runc"',
    ].join('\n') + '\n',
  );
  for (const c of opts.conflists) await writeFile(join(confDir, `${c.name}.conflist`), JSON.stringify(c));
  const globals = [
    '--root',
    join(opts.dir, 'root'),
    '--runroot',
    join(opts.dir, 'runroot'),
    '--tmpdir',
    join(opts.dir, 'tmp'),
    '--storage-driver',
    'vfs',
    '--network-config-dir',
    confDir,
  ];
  const p: PrivatePodman = {
    host,
    async run(args) {
      const r = await h.exec(host, ['env', `CONTAINERS_CONF=${join(opts.dir, 'containers.conf')}`, 'podman', ...globals, ...args]);
      if (r.code !== 0) throw new Error(`podman ${args.join(' ')} on ${host.name} failed (${r.code}): ${r.stderr.trim()}`);
      return r.stdout.trim();
    },
    async close() {
      await p.run(['rm', '-af', '-t', '0']).catch(() => undefined);
      await p.run(['pod', 'rm', '-af', '-t', '0']).catch(() => undefined);
    },
  };
  await p.run(['import', opts.rootfsTar, PODMAN_IMAGE]);
  return p;
}

export const PAUSE_IMAGE = 'localhost/bees-pause:1';

/** A docker-archive of `rootfsTar` with /pause as its command, named PAUSE_IMAGE (made by a throwaway private podman). */
export async function pauseImageArchive(h: RuntimeHarness, host: HarnessHost, rootfsTar: string, dir: string): Promise<string> {
  const pod = [
    'podman',
    '--root',
    join(dir, 'proot'),
    '--runroot',
    join(dir, 'prun'),
    '--tmpdir',
    join(dir, 'ptmp'),
    '--storage-driver',
    'vfs',
  ];
  for (const argv of [
    [...pod, 'import', '--change', 'CMD ["/pause"]', rootfsTar, PAUSE_IMAGE],
    [...pod, 'save', '--format', 'docker-archive', '-o', join(dir, 'pause.tar'), PAUSE_IMAGE],
    [...pod, 'rmi', '-a', '-f'],
  ]) {
    const r = await h.exec(host, argv);
    if (r.code !== 0) throw new Error(`${argv.join(' ')}: ${r.stderr}`);
  }
  return join(dir, 'pause.tar');
}

/**
 * A containerd of its own (root, state, socket, CNI bin dir with midonet + loopback, net.d holding `conflist`)
 * with the CRI plugin, run inside `host`, the pause image imported from `pauseArchive`.
 */
export async function startContainerd(
  h: RuntimeHarness,
  host: HarnessHost,
  opts: { dir: string; pluginDir: string; conflist: { name: string }; pauseArchive: string },
): Promise<HostContainerd> {
  const { dir } = opts;
  const [binDir, confDir] = [join(dir, 'cni-bin'), join(dir, 'net.d')];
  await mkdir(binDir, { recursive: true });
  await mkdir(confDir, { recursive: true });
  // containerd 1.6 takes one CNI bin dir: ours plus the reference loopback (the CRI sets up lo) and portmap.
  await copyFile(join(opts.pluginDir, 'midonet'), join(binDir, 'midonet'));
  for (const p of ['loopback', 'portmap']) await symlink(`${REFERENCE_DIR}/${p}`, join(binDir, p));
  await writeFile(join(confDir, '10-bees.conflist'), JSON.stringify(opts.conflist));
  return startHostContainerd(h, host, { dir, binDir, confDir, sandboxImage: PAUSE_IMAGE, pauseArchive: opts.pauseArchive });
}

/** A CRI sandbox's network namespace path, from its verbose status (containerd's runtimeSpec). */
export function sandboxNetns(info: Record<string, string>): string {
  const spec = JSON.parse(info.info ?? '{}') as { runtimeSpec?: { linux?: { namespaces?: { type: string; path?: string }[] } } };
  const ns = spec.runtimeSpec?.linux?.namespaces?.find((n) => n.type === 'network')?.path;
  if (!ns) throw new Error('no network namespace in the sandbox status');
  return ns;
}
