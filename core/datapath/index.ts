export { LinuxDatapath, DEFAULT_TUNNEL_PORT } from './linux-datapath.js';
export { detectUnderlay, type Underlay } from './underlay.js';
export { spawnCounter, CommandError } from './exec.js';
export type * from './types.js';
