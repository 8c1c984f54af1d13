// Core's `bees` command modules (app/commands.ts adds the adapters'). Adding commands is one line here: a module
// exporting `commands: Command[]`. Modules are loaded lazily, and must import heavy things (fastify, the store,
// the agent) inside run(), so `bees net ls` stays quick.
import type { CommandModule } from './command.js';

export const commandModules: Array<() => Promise<CommandModule>> = [
  () => import('./api.js'),
  () => import('./net.js'),
  () => import('./router.js'),
  () => import('./port.js'),
  () => import('./host.js'),
  () => import('./status.js'),
  () => import('./policy.js'),
  () => import('./sg.js'),
  () => import('./lb.js'),
  () => import('./trace.js'),
  () => import('./attribution.js'),
  () => import('../agent/commands.js'),
];
