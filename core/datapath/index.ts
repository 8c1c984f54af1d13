export { LinuxDatapath } from './linux-datapath.js';
export { DEFAULT_TUNNEL_PORT } from '../model/defaults.js';
export { detectUnderlay, type Underlay } from './underlay.js';
export { spawnCounter, CommandError } from './exec.js';
export type * from './types.js';
