// `bees image build`: the node agent's container image, made from this checkout and this machine with no registry
// and no Docker build. It is one gzipped layer holding node (the running binary and the shared libraries ldd names),
// the built dist/, the production node_modules, the static CNI shim, and the system tools the datapath spawns (ip,
// bridge, nft, iptables…) with their libraries. The tarball is an OCI image layout (oci-layout, index.json, blobs/)
// that also carries a Docker `manifest.json`, so `ctr images import` and `docker load` both accept the same file.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { CACHE_DIR as FASTPATH_CACHE, fastPathObject, objectName, SOURCE as FASTPATH_SOURCE } from '../../core/datapath/fastpath/build.js';
import { existsSync, realpathSync } from 'node:fs';
import { chmod, copyFile, lstat, mkdir, mkdtemp, readFile, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';

const run = promisify(execFile);
const gz = promisify(gzip);

/** Tools the agent and its datapath spawn (core/datapath, core/agent): looked up on this machine's PATH. */
export const DEFAULT_TOOLS = [
  'ip',
  'bridge',
  'nft',
  'sysctl',
  'nsenter',
  'tc',
  'conntrack',
  'env',
  'iptables',
  'ip6tables',
  'iptables-restore',
  'ip6tables-restore',
  'iptables-save',
  'ip6tables-save',
];
const SEARCH_PATH = ['/usr/sbin', '/usr/bin', '/sbin', '/bin', '/usr/local/sbin', '/usr/local/bin'];
/** Where the project lives inside the image. */
export const APP_DIR = '/opt/bees';

export interface ImageOptions {
  /** The checkout holding package.json, package-lock.json and node_modules. */
  root: string;
  /** Its built output (tsc + the shim): root/dist unless given. */
  dist?: string;
  /** Image reference, e.g. docker.io/midonet/bees:0.1.0. */
  ref?: string;
  tools?: string[];
  out: string;
}

export interface ImageReport {
  out: string;
  ref: string;
  bytes: number;
  layerBytes: number;
  manifestDigest: string;
  files: number;
}

/** The checkout this module belongs to: the nearest directory above with a package.json. */
export function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'node_modules'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error('image build: no package.json with node_modules above ' + fileURLToPath(import.meta.url));
    dir = up;
  }
}

interface PackageJson {
  name: string;
  version: string;
  bin?: Record<string, string>;
}
interface Lockfile {
  packages: Record<string, { dev?: boolean; devOptional?: boolean; optional?: boolean }>;
}

/** Top-level packages the program needs at run time, from package-lock.json (everything npm would keep with --omit=dev). */
export async function productionPackages(root: string): Promise<string[]> {
  const lock = JSON.parse(await readFile(join(root, 'package-lock.json'), 'utf8')) as Lockfile;
  return Object.entries(lock.packages)
    .filter(([key, p]) => /^node_modules\/(@[^/]+\/)?[^/]+$/.test(key) && !p.dev && !p.devOptional)
    .map(([key]) => key)
    .filter((key) => existsSync(join(root, key))) // optional packages for other platforms are absent
    .sort();
}

/** Usr-merged Debian: /lib, /bin, /sbin, /lib64 are symlinks into /usr, and the image is laid out the same way. */
function inImage(path: string): string {
  return /^\/(lib|lib64|bin|sbin)\//.test(path) ? `/usr${path}` : path;
}

function which(tool: string): string | undefined {
  for (const dir of SEARCH_PATH) {
    const p = join(dir, tool);
    if (existsSync(p)) return p;
  }
  return undefined;
}

/** The shared objects a dynamic executable loads, as ldd resolves them here (none for a static one). */
async function librariesOf(binary: string): Promise<string[]> {
  const { stdout } = await run('ldd', [binary]).catch((err: { stdout?: string }) => ({ stdout: err.stdout ?? '' }));
  const libs: string[] = [];
  for (const line of stdout.split('\n')) {
    const m = /=>\s*(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m) libs.push(m[1]!);
  }
  return libs;
}

class Rootfs {
  private readonly copied = new Set<string>();
  constructor(readonly dir: string) {}

  private at(path: string): string {
    return join(this.dir, inImage(path));
  }

  /** Copy a host file to the same path in the image (following symlinks), plus, if it is a program, its libraries. */
  async addFile(hostPath: string, imagePath = hostPath, mode?: number): Promise<void> {
    const dest = this.at(imagePath);
    if (this.copied.has(dest)) return;
    this.copied.add(dest);
    await mkdir(dirname(dest), { recursive: true });
    await copyFile(hostPath, dest);
    if (mode !== undefined) await chmod(dest, mode);
    else await chmod(dest, (await stat(hostPath)).mode & 0o7777);
  }

  async addProgram(hostPath: string, imagePath = hostPath): Promise<void> {
    await this.addFile(hostPath, imagePath);
    for (const lib of await librariesOf(hostPath)) await this.addFile(realpathSync(lib), lib);
  }

  /** A tool by name: the real file under its real name, and the name as a symlink to it when they differ
   *  (xtables-nft-multi dispatches on argv[0], so iptables must stay a link). */
  async addTool(name: string): Promise<void> {
    const found = which(name);
    if (!found)
      throw new Error(`image build: '${name}' is not installed on this machine (apt-get install it, or leave it out with --tools)`);
    const real = realpathSync(found);
    await this.addProgram(real, inImage(real));
    const link = this.at(found);
    if (inImage(real) !== inImage(found) && !existsSync(link)) {
      await mkdir(dirname(link), { recursive: true });
      await symlink(relative(dirname(inImage(found)), inImage(real)), link);
    }
    // iptables loads its match/target extensions with dlopen; ldd of the binary does not see them.
    if (/^xtables-/.test(real.split('/').pop()!)) {
      const ext = '/usr/lib/x86_64-linux-gnu/xtables';
      if (existsSync(ext)) for (const f of await readdir(ext)) if (f.endsWith('.so')) await this.addProgram(join(ext, f));
    }
  }

  async link(path: string, target: string): Promise<void> {
    await mkdir(dirname(join(this.dir, path)), { recursive: true });
    await symlink(target, join(this.dir, path));
  }

  async copyTree(src: string, dest: string): Promise<void> {
    await mkdir(dirname(join(this.dir, dest)), { recursive: true });
    await run('cp', ['-a', src, join(this.dir, dest)]);
  }
}

const sha256 = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

async function countFiles(dir: string): Promise<number> {
  let n = 0;
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) if (!e.isDirectory()) n++;
  return n;
}

/** Docker's short form of a reference: docker.io/library/x → x, docker.io/o/x → o/x. */
function dockerTag(ref: string): string {
  return ref.replace(/^docker\.io\/library\//, '').replace(/^docker\.io\//, '');
}

export async function buildImage(o: ImageOptions): Promise<ImageReport> {
  const root = resolve(o.root);
  const dist = resolve(o.dist ?? join(root, 'dist'));
  const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as PackageJson;
  const ref = o.ref ?? `docker.io/midonet/bees:${pkg.version}`;
  if (!/^[a-z0-9.-]+(:\d+)?\/[a-z0-9._/-]+:[\w.-]+$/.test(ref))
    throw new Error(`image build: '${ref}' is not a full image reference such as docker.io/midonet/bees:0.1.0`);
  // The entry point is wherever package.json says `bees` is (it moves as the CLI moves), inside the built tree.
  const binRel = pkg.bin?.bees;
  if (!binRel) throw new Error('image build: package.json has no bin.bees');
  const mainJs = join(dist, relative('dist', binRel));
  if (!existsSync(mainJs)) throw new Error(`image build: ${mainJs} is missing (run \`npm run build\` first, or pass --dist DIR)`);
  const shim = join(dist, 'cni', 'midonet');
  if (!existsSync(shim)) throw new Error(`image build: ${shim} is missing (run \`npm run build:cni\` first)`);

  const work = await mkdtemp(join(tmpdir(), 'bees-image-'));
  try {
    const fs = new Rootfs(join(work, 'rootfs'));
    for (const d of [
      'usr/bin',
      'usr/sbin',
      'usr/lib',
      'usr/lib64',
      'etc',
      'tmp',
      'run',
      'var/lib/bees',
      'run/bees',
      'run/netns',
      'opt/cni/bin',
      'etc/cni/net.d',
    ])
      await mkdir(join(fs.dir, d), { recursive: true });
    await chmod(join(fs.dir, 'tmp'), 0o1777);
    for (const d of ['bin', 'sbin', 'lib', 'lib64']) await fs.link(d, `usr/${d}`);
    // As on Debian: /var/run is /run. containerd names pod namespaces /var/run/netns/cni-…, and the agent opens
    // them by that name through its /run/netns mount.
    await fs.link('var/run', '../run');
    await fs.addProgram(realpathSync(process.execPath), '/usr/bin/node');
    for (const tool of o.tools ?? DEFAULT_TOOLS) await fs.addTool(tool);
    // A static, minimal identity: tools that look up user 0 (ip netns, iptables' lock) find it.
    await writeFile(join(fs.dir, 'etc/passwd'), 'root:x:0:0:root:/root:/usr/sbin/nologin\n');
    await writeFile(join(fs.dir, 'etc/group'), 'root:x:0:\n');
    await writeFile(
      join(fs.dir, 'etc/nsswitch.conf'),
      'passwd: files\ngroup: files\nhosts: files dns\nprotocols: files\nservices: files\n',
    );
    // nft resolves protocol and service names (`meta l4proto tcp`) through them: without, every rule set with a
    // protocol fails to load ("Could not resolve protocol name").
    for (const f of ['/etc/protocols', '/etc/services']) {
      if (!existsSync(f)) throw new Error(`image build: ${f} is missing on this machine (apt-get install netbase)`);
      await copyFile(f, join(fs.dir, f));
    }

    await fs.copyTree(dist, `${APP_DIR}/dist`);
    // Source maps and declaration-less test builds are not needed to run.
    await run('find', [join(fs.dir, APP_DIR, 'dist'), '(', '-name', '*.map', '-o', '-path', '*/test/*', ')', '-delete']);
    await writeFile(
      join(fs.dir, APP_DIR, 'package.json'),
      JSON.stringify({ name: pkg.name, version: pkg.version, type: 'module', private: true }, null, 2) + '\n',
    );
    for (const p of await productionPackages(root)) await fs.copyTree(join(root, p), `${APP_DIR}/${p}`);
    // koffi ships prebuilt binaries for every platform; keep this one's.
    const koffiBuilds = join(fs.dir, APP_DIR, 'node_modules/koffi/build/koffi');
    if (existsSync(koffiBuilds)) {
      for (const b of await readdir(koffiBuilds))
        if (b !== `${process.platform}_${process.arch}`) await rm(join(koffiBuilds, b), { recursive: true, force: true });
    }
    const mainInImage = join(APP_DIR, 'dist', relative(dist, mainJs));
    await chmod(join(fs.dir, mainInImage), 0o755); // run through its `#!/usr/bin/env -S … node …` line
    await fs.link('usr/bin/bees', mainInImage);
    await fs.addFile(shim, `${APP_DIR}/dist/cni/midonet`, 0o755);
    // The datapath's fast path: its source beside its loader (tsc copies no C), the object built here from it into
    // the cache the agent reads (the image has no clang), and libbpf to load it. Without clang here the image still
    // runs, with the fast path unavailable (the agent says why).
    await fs.addFile(FASTPATH_SOURCE, `${APP_DIR}/dist/core/datapath/fastpath/fastpath.bpf.c`);
    const libbpf = '/usr/lib/x86_64-linux-gnu/libbpf.so.1';
    const object = await fastPathObject().catch(() => undefined);
    if (object && existsSync(libbpf)) {
      await fs.addFile(object, join(FASTPATH_CACHE, objectName()));
      await fs.addProgram(realpathSync(libbpf), libbpf);
    }
    const files = await countFiles(fs.dir);

    // One reproducible layer: sorted, owned by root, fixed times.
    const layerTar = join(work, 'layer.tar');
    await run('tar', ['-C', fs.dir, '--sort=name', '--mtime=@0', '--owner=0', '--group=0', '--numeric-owner', '-cf', layerTar, '.'], {
      maxBuffer: 1 << 24,
    });
    const raw = await readFile(layerTar);
    const diffId = `sha256:${sha256(raw)}`;
    const layer = await gz(raw, { level: 9 });
    const layerDigest = sha256(layer);

    const config = {
      architecture: process.arch === 'x64' ? 'amd64' : process.arch,
      os: 'linux',
      created: '1970-01-01T00:00:00Z',
      config: {
        Entrypoint: ['/usr/bin/bees'],
        Cmd: ['agent'],
        Env: ['PATH=/usr/sbin:/usr/bin:/sbin:/bin', `BEES_CNI_BINARY=${APP_DIR}/dist/cni/midonet`, 'NODE_ENV=production'],
        WorkingDir: APP_DIR,
        Labels: { 'org.opencontainers.image.title': 'midonet-bees', 'org.opencontainers.image.version': pkg.version },
      },
      rootfs: { type: 'layers', diff_ids: [diffId] },
      history: [{ created: '1970-01-01T00:00:00Z', created_by: 'bees image build' }],
    };
    const configText = JSON.stringify(config);
    const configDigest = sha256(configText);
    const manifest = {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: {
        mediaType: 'application/vnd.oci.image.config.v1+json',
        digest: `sha256:${configDigest}`,
        size: Buffer.byteLength(configText),
      },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: `sha256:${layerDigest}`, size: layer.length }],
    };
    const manifestText = JSON.stringify(manifest);
    const manifestDigest = sha256(manifestText);
    const tag = ref.slice(ref.lastIndexOf(':') + 1);
    const index = {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [
        {
          mediaType: manifest.mediaType,
          digest: `sha256:${manifestDigest}`,
          size: Buffer.byteLength(manifestText),
          platform: { architecture: config.architecture, os: 'linux' },
          // containerd names the image from the first, other OCI tools from the second.
          annotations: { 'io.containerd.image.name': ref, 'org.opencontainers.image.ref.name': tag },
        },
      ],
    };
    const out = join(work, 'image');
    await mkdir(join(out, 'blobs/sha256'), { recursive: true });
    await writeFile(join(out, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    await writeFile(join(out, 'index.json'), JSON.stringify(index));
    await writeFile(join(out, 'blobs/sha256', configDigest), configText);
    await writeFile(join(out, 'blobs/sha256', manifestDigest), manifestText);
    await writeFile(join(out, 'blobs/sha256', layerDigest), layer);
    // `docker load` (20.10) reads only this file; it accepts the gzipped layer and checks it against diff_ids.
    await writeFile(
      join(out, 'manifest.json'),
      JSON.stringify([
        {
          Config: `blobs/sha256/${configDigest}`,
          RepoTags: [dockerTag(ref)],
          Layers: [`blobs/sha256/${layerDigest}`],
        },
      ]),
    );
    const dest = resolve(o.out);
    await mkdir(dirname(dest), { recursive: true });
    await run('tar', ['-C', out, '--sort=name', '--mtime=@0', '--owner=0', '--group=0', '--numeric-owner', '-cf', dest, '.']);
    return { out: dest, ref, bytes: (await lstat(dest)).size, layerBytes: layer.length, manifestDigest: `sha256:${manifestDigest}`, files };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
