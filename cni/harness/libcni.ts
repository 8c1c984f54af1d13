// A runtime's side of CNI, after libcni/api.go: ADD down the chain with prevResult, cache the result, CHECK and
// DEL (in reverse) with the cached result, GC with both valid-attachment keys, STATUS, VERSION. It drives any
// plugin binaries, so the same tests judge the reference plugins and ours.
import { ResultCache } from './cache.js';
import { buildPluginConfig } from './config.js';
import { findPlugin, invokePlugin, pluginEnv } from './invoke.js';
import { resultProblems } from './result-check.js';
import { HarnessError, PluginError, type Attachment, type NetworkConfigList, type PluginConf, type RuntimeConf } from './types.js';
import { atLeast } from './versions.js';

export interface Invocation {
  plugin: string;
  command: string;
  conf: Record<string, unknown>;
  env: Record<string, string>;
}

export interface HarnessOptions {
  /** CNI_PATH: directories searched for plugin binaries. */
  pluginDirs: string[];
  /** Where the result cache lives (a directory of the harness's own, never /var/lib/cni). */
  cacheDir: string;
  /** Check every ADD result against its version's format (default true). */
  strictResults?: boolean;
  /** Run plugins inside this network namespace (a test host's), as a runtime on that host would. */
  hostNetns?: string;
}

export class CniHarness {
  readonly cache: ResultCache;
  /** Every call made, in order: what each plugin was sent. */
  readonly trace: Invocation[] = [];

  constructor(readonly opts: HarnessOptions) {
    this.cache = new ResultCache(opts.cacheDir);
  }

  private async exec(plugin: PluginConf, command: string, conf: Record<string, unknown>, rt?: RuntimeConf): Promise<unknown> {
    const path = await findPlugin(plugin.type, this.opts.pluginDirs);
    const env = pluginEnv(command, this.opts.pluginDirs, rt);
    this.trace.push({ plugin: plugin.type, command, conf, env });
    return invokePlugin(path, command, env, conf, this.opts.hostNetns);
  }

  /** ADD each plugin in order, each getting the previous one's result; caches and returns the last result. */
  async addNetworkList(list: NetworkConfigList, rt: RuntimeConf): Promise<unknown> {
    let prev: unknown;
    for (const plugin of list.plugins) {
      const conf = buildPluginConfig(list, plugin, rt, prev);
      const result = await this.exec(plugin, 'ADD', conf, rt);
      if (result === undefined) throw new HarnessError(`${plugin.type} ADD printed no result`);
      if (this.opts.strictResults !== false) {
        const problems = resultProblems(result, list.cniVersion);
        if (problems.length)
          throw new HarnessError(`${plugin.type} ADD result breaks the ${list.cniVersion} format: ${problems.join('; ')}`);
      }
      prev = result;
    }
    await this.cache.put(list.name, rt, prev);
    return prev;
  }

  /** CHECK each plugin in order with the cached result (>= 0.4.0; skipped when disableCheck). */
  async checkNetworkList(list: NetworkConfigList, rt: RuntimeConf): Promise<void> {
    if (!atLeast(list.cniVersion, '0.4.0'))
      throw new HarnessError(`configuration version "${list.cniVersion}" does not support the CHECK command`);
    if (list.disableCheck) return;
    const cached = await this.cache.get(list.name, rt.containerId, rt.ifname);
    if (!cached) throw new HarnessError(`no cached result for ${list.name}/${rt.containerId}/${rt.ifname}: CHECK needs a previous ADD`);
    for (const plugin of list.plugins) {
      await this.exec(plugin, 'CHECK', buildPluginConfig(list, plugin, rt, cached.result), rt);
    }
  }

  /** DEL in reverse order, with the cached result as prevResult from 0.4.0 on; then forgets the attachment. */
  async delNetworkList(list: NetworkConfigList, rt: RuntimeConf): Promise<void> {
    const cached = atLeast(list.cniVersion, '0.4.0') ? await this.cache.get(list.name, rt.containerId, rt.ifname) : undefined;
    for (const plugin of [...list.plugins].reverse()) {
      await this.exec(plugin, 'DEL', buildPluginConfig(list, plugin, rt, cached?.result), rt);
    }
    await this.cache.remove(list.name, rt.containerId, rt.ifname);
  }

  /**
   * GC as libcni does: DEL every cached attachment that is not valid (carrying on past errors), then, from 1.1.0
   * and unless disableGC, send GC to every plugin with the valid list under both keys. Returns the errors seen.
   */
  async gcNetworkList(list: NetworkConfigList, valid: Attachment[]): Promise<Error[]> {
    const errors: Error[] = [];
    const isValid = (c: string, i: string) => valid.some((a) => a.containerID === c && a.ifname === i);
    for (const entry of await this.cache.list(list.name)) {
      if (isValid(entry.containerId, entry.ifName)) continue;
      const rt: RuntimeConf = { containerId: entry.containerId, ifname: entry.ifName, netns: entry.netns };
      if (entry.cniArgs) rt.args = entry.cniArgs;
      if (entry.capabilityArgs) rt.capabilityArgs = entry.capabilityArgs;
      try {
        await this.delNetworkList(list, rt);
      } catch (e) {
        errors.push(e as Error);
      }
    }
    if (!atLeast(list.cniVersion, '1.1.0') || list.disableGC) return errors;
    for (const plugin of list.plugins) {
      const conf = buildPluginConfig(list, plugin, undefined);
      conf['cni.dev/valid-attachments'] = valid;
      conf['cni.dev/attachments'] = valid; // the spec-v1.1.0 tag's name; libcni sends both (#1101)
      try {
        await this.exec(plugin, 'GC', conf);
      } catch (e) {
        errors.push(e as Error);
      }
    }
    return errors;
  }

  /** STATUS of every plugin (>= 1.1.0; below that a runtime assumes ready). Throws the first PluginError. */
  async getStatusNetworkList(list: NetworkConfigList): Promise<void> {
    if (!atLeast(list.cniVersion, '1.1.0')) return;
    for (const plugin of list.plugins) await this.exec(plugin, 'STATUS', buildPluginConfig(list, plugin, undefined));
  }

  /** VERSION of one plugin binary. */
  async getVersionInfo(type: string, cniVersion = '1.1.0'): Promise<{ cniVersion: string; supportedVersions: string[] }> {
    const out = (await this.exec({ type }, 'VERSION', { cniVersion })) as { cniVersion?: unknown; supportedVersions?: unknown } | undefined;
    if (!out || !Array.isArray(out.supportedVersions))
      throw new HarnessError(`${type} VERSION printed no supportedVersions: ${JSON.stringify(out)}`);
    return { cniVersion: String(out.cniVersion), supportedVersions: out.supportedVersions.map(String) };
  }

  /** Every plugin of the list supports the list's version (libcni ValidateNetworkList); returns the misfits. */
  async validateNetworkList(list: NetworkConfigList): Promise<string[]> {
    const misfits: string[] = [];
    for (const p of list.plugins) {
      const info = await this.getVersionInfo(p.type, list.cniVersion);
      if (!info.supportedVersions.includes(list.cniVersion))
        misfits.push(`${p.type} does not support ${list.cniVersion} (it supports ${info.supportedVersions.join(', ')})`);
    }
    return misfits;
  }
}

export { PluginError, HarnessError };
