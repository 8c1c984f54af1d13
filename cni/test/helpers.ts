// Shared test fixtures: temp dirs, namespaces and reference-plugin conflists, all removed in t.teardown.
import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
import { createNetns, randomSuffix, sh, type Netns } from '../harness/netns.js';

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
export async function referenceConflist(t: ExecutionContext, cniVersion: string): Promise<{ text: string; bridge: string; subnet: string; dataDir: string; name: string }> {
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
      { type: 'bridge', bridge, isGateway: true, ipMasq: false, ipam: { type: 'host-local', subnet: cidr, dataDir, routes: [{ dst: '0.0.0.0/0' }] } },
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

/** Builds the shipped plugin executable (bun --compile) once per test process: tests run what users run. */
export function buildPlugin(): Promise<string> {
  built ??= (async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cnibin-'));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    await sh(join(process.cwd(), 'node_modules/.bin/bun'), ['build', '--compile', '--minify', join(process.cwd(), 'cni/plugin/main.ts'), '--outfile', join(dir, 'midonet')]);
    return dir;
  })();
  return built;
}
