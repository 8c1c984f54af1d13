// What the harness reads and hands to plugins: libcni's NetworkConfigList / RuntimeConf, in TypeScript.

/** One plugin object of a conflist, as written (type, capabilities, anything else passes through). */
export interface PluginConf {
  type: string;
  capabilities?: Record<string, boolean>;
  [key: string]: unknown;
}

export interface NetworkConfigList {
  name: string;
  /** The version chosen for this run (after cniVersions negotiation). */
  cniVersion: string;
  cniVersions?: string[];
  disableCheck?: boolean;
  disableGC?: boolean;
  plugins: PluginConf[];
  /** The file's bytes, for error messages. */
  source?: string;
}

/** Per-attachment parameters, libcni's RuntimeConf. */
export interface RuntimeConf {
  containerId: string;
  netns: string;
  ifname: string;
  /** CNI_ARGS pairs, sent as K=V;K=V. */
  args?: [string, string][];
  /** Capability args (portMappings, bandwidth, ips, mac, dns…); each plugin only gets those it declares. */
  capabilityArgs?: Record<string, unknown>;
}

export interface Attachment {
  containerID: string;
  ifname: string;
}

/** A plugin failed: its error object (or stderr when it printed none), with the command that failed. */
export class PluginError extends Error {
  constructor(
    readonly plugin: string,
    readonly command: string,
    readonly code: number,
    readonly msg: string,
    readonly details?: string,
    readonly stderr?: string,
  ) {
    super(`${plugin} ${command} failed with code ${code}: ${msg}${details ? ` (${details})` : ''}`);
    this.name = 'PluginError';
  }
}

/** The harness itself refused: a bad conflist, a missing plugin, a result that breaks the spec. */
export class HarnessError extends Error {
  override name = 'HarnessError';
}
