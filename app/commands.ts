// Every `bees` command module: core's (core/cli/commands.ts), then the agent with its adapters, the adapters'
// own commands and the demo. Loaded lazily; each module imports heavy things inside run().
import type { CommandModules } from '../core/cli/main.js';
import { commandModules as coreCommandModules } from '../core/cli/commands.js';

export const commandModules: CommandModules = [
  ...coreCommandModules,
  () => import('./agent.js'),
  () => import('../cni/install.js'),
  () => import('../mesos/config.js'),
  () => import('../swarm/commands.js'),
  () => import('../kubernetes/commands.js'),
  () => import('./demo/commands.js'),
];
