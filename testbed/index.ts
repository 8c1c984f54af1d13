export { Harness, OUTSIDE_IP, type HarnessHost, type HarnessOptions, type AgentCommand } from './harness.js';
export { execArgv, mustExec, nsArgv, type ExecResult } from './shell.js';
export { snapshotNetns, namespacesWithPrefix } from './leaks.js';
