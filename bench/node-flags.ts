// The node flags a benchmark runs the agent under. Production's are app/main.ts's first line (`#!/usr/bin/env -S
// VAR=… node FLAGS`: the installed `bees`, the image and the ./bees launcher all run it); the memory and scale benches
// start the agent with them by default, and can compare other sets side by side (BENCH_NODE_FLAGS), because the
// flags trade memory (how much heap V8 reserves) against CPU (how often it collects), and only an interleaved run on one
// machine tells which way a change of them goes.
import { parseLaunch, productionLaunch, type NodeLaunch } from '../testbed/bees-entry.js';

export type Launch = NodeLaunch;

export interface FlagVariant {
  /** How tables name it: its words as written (`defaults` for none). */
  name: string;
  launch: Launch;
}

export function launchName(l: Launch): string {
  const words = [...Object.entries(l.env).map(([k, v]) => `${k}=${v}`), ...l.nodeArgs];
  return words.length ? words.join(' ') : 'defaults';
}

/**
 * The variants of `spec`: `;`-separated sets of words, each `production` (app/main.ts's line), `defaults` (node's
 * own, no environment) or VAR=value words and node flags, e.g.
 * `production; MALLOC_ARENA_MAX=2 --max-semi-space-size=4`. Unset or empty: production alone.
 */
export function flagVariants(spec: string | undefined): FlagVariant[] {
  const parts = (spec ?? '')
    .split(';')
    .map((s) => s.trim())
    .filter(Boolean);
  if (parts.length === 0) parts.push('production');
  const variants = parts.map((p): FlagVariant => {
    const launch = p === 'production' ? productionLaunch() : p === 'defaults' ? { env: {}, nodeArgs: [] } : parseLaunch(p.split(/\s+/));
    return { name: launchName(launch), launch };
  });
  const names = variants.map((v) => v.name);
  const twice = names.find((n, i) => names.indexOf(n) !== i);
  if (twice) throw new Error(`flag variant '${twice}' given twice`);
  return variants;
}

/** Round r's order of n variants: forward on even rounds, backward on odd ones, so none always goes first. */
export function interleavedOrder(n: number, round: number): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  return round % 2 === 0 ? order : order.reverse();
}
