// The shim ↔ agent protocol (`POST /v1/cni` on the workload socket): the names and limits both sides must agree
// on. The C shim (cni/shim/midonet.c) gets them, with the supported versions, from a header generated from this
// file at build time (cni/shim/build.ts), so there is one definition.
export const CNI_PATH_ROUTE = '/v1/cni';

/** The CNI variables the shim forwards, each as header `cni-<name lower-case without CNI_>`, percent-encoded. */
export const CNI_ENV_VARS = ['CNI_COMMAND', 'CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME', 'CNI_ARGS', 'CNI_PATH'] as const;

export function headerOf(envVar: (typeof CNI_ENV_VARS)[number]): string {
  return `cni-${envVar.slice('CNI_'.length).toLowerCase()}`;
}

/** Response header carrying the plugin's exit status (0 or 1); the body is what it prints on stdout. */
export const EXIT_CODE_HEADER = 'cni-exit-code';

/** The largest network configuration (stdin) accepted: far above any real one (GC lists included). */
export const MAX_STDIN_BYTES = 4 * 1024 * 1024;

export const DEFAULT_AGENT_TIMEOUT_MS = 30_000;
