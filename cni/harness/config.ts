// Loading network configurations the way libcni does: conflists, single-plugin configs (which become a one-plugin
// list), and the per-call config each plugin receives on stdin.
import { readFile } from 'node:fs/promises';
import { HarnessError, type NetworkConfigList, type PluginConf, type RuntimeConf } from './types.js';
import { negotiate } from './versions.js';

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.\-]*$/;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Parses a conflist (has `plugins`) or a single-plugin config (has `type`). */
export function parseNetworkConfig(text: string): NetworkConfigList {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new HarnessError(`network configuration is not JSON: ${(e as Error).message}`);
  }
  if (!isObject(raw)) throw new HarnessError('network configuration must be a JSON object');
  if (typeof raw.name !== 'string' || !NAME.test(raw.name))
    throw new HarnessError(`network configuration: name ${JSON.stringify(raw.name)} must match ${NAME.source}`);
  const cniVersion = negotiate(raw.cniVersion, raw.cniVersions) ?? '0.1.0';
  if (Array.isArray(raw.plugins)) {
    if (raw.plugins.length === 0) throw new HarnessError(`network ${raw.name}: plugins is empty`);
    raw.plugins.forEach((p: unknown, i) => {
      if (!isObject(p) || typeof p.type !== 'string' || p.type === '')
        throw new HarnessError(`network ${String(raw.name)}: plugins[${i}] has no type`);
    });
    const list: NetworkConfigList = { name: raw.name, cniVersion, plugins: raw.plugins as PluginConf[], source: text };
    if (Array.isArray(raw.cniVersions)) list.cniVersions = raw.cniVersions as string[];
    if (raw.disableCheck === true) list.disableCheck = true;
    if (raw.disableGC === true) list.disableGC = true;
    return list;
  }
  if (typeof raw.type !== 'string' || raw.type === '') throw new HarnessError(`network ${raw.name}: neither plugins nor type is given`);
  // libcni's ConfListFromConf: a single config is a list of one, with the same name and version.
  return { name: raw.name, cniVersion, plugins: [raw as PluginConf], source: text };
}

export async function loadNetworkConfig(file: string): Promise<NetworkConfigList> {
  return parseNetworkConfig(await readFile(file, 'utf8'));
}

/**
 * The JSON one plugin gets on stdin (libcni buildOneConfig + injectRuntimeConfig): the plugin object with the
 * list's name and version, `capabilities` stripped, runtimeConfig holding only the capability args it declared,
 * and the previous result when there is one.
 */
export function buildPluginConfig(
  list: NetworkConfigList,
  plugin: PluginConf,
  rt: RuntimeConf | undefined,
  prevResult?: unknown,
): Record<string, unknown> {
  const { capabilities, ...rest } = plugin;
  const conf: Record<string, unknown> = { ...rest, name: list.name, cniVersion: list.cniVersion };
  const declared = Object.entries(capabilities ?? {})
    .filter(([, on]) => on === true)
    .map(([k]) => k);
  const runtimeConfig: Record<string, unknown> = {};
  for (const cap of declared) {
    const v = rt?.capabilityArgs?.[cap];
    if (v !== undefined) runtimeConfig[cap] = v;
  }
  if (Object.keys(runtimeConfig).length > 0)
    conf.runtimeConfig = { ...(isObject(rest.runtimeConfig) ? rest.runtimeConfig : {}), ...runtimeConfig };
  if (prevResult !== undefined) conf.prevResult = prevResult;
  else delete conf.prevResult;
  return conf;
}
