// The jump graph of filter chains. nftables refuses a ruleset with a jump loop and stops at 16 nested jumps
// (NFT_JUMP_STACK_SIZE), and a refused ruleset means a host enforcing nothing new; so the topology refuses, at
// write time, any rule that would close a cycle or lead deeper than MAX_JUMP_DEPTH, naming the chains involved.
import { MAX_JUMP_DEPTH, type Chain, type Rule } from '../model/types.js';
import { TopologyError } from './errors.js';

type JumpRule = Pick<Rule, 'id' | 'chainId' | 'action' | 'jumpChainId'>;

/** chain id -> the chains its rules jump to. */
function edges(rules: Iterable<JumpRule>): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const r of rules) {
    if (r.action !== 'jump' || !r.jumpChainId) continue;
    let s = out.get(r.chainId);
    if (!s) out.set(r.chainId, (s = new Set()));
    s.add(r.jumpChainId);
  }
  return out;
}

/**
 * Checks the graph of `rules` with `changed` in place of its stored version: throws a 400 on `jumpChainId` if
 * `changed` closes a cycle, or if some chain would then lead through more than MAX_JUMP_DEPTH nested jumps.
 */
export function checkJumps(rules: readonly JumpRule[], changed: JumpRule, chains: readonly Chain[]): void {
  if (changed.action !== 'jump' || !changed.jumpChainId) return;
  const graph = edges([...rules.filter((r) => r.id !== changed.id), changed]);
  const names = new Map(chains.map((c) => [c.id, c.name]));
  const name = (id: string) => (names.has(id) ? `"${names.get(id)}"` : id);
  // A cycle through the new edge is a path from its target back to its chain.
  const path = pathBetween(graph, changed.jumpChainId, changed.chainId);
  if (path) {
    const loop = [changed.chainId, ...path].map(name).join(' -> ');
    throw new TopologyError(
      'invalid',
      `jumpChainId: a jump from chain ${name(changed.chainId)} to chain ${name(changed.jumpChainId)} makes a loop: ${loop}`,
      'jumpChainId',
    );
  }
  // Longest jump path below each chain (the graph is acyclic now).
  const height = new Map<string, number>();
  const heightOf = (id: string): number => {
    const known = height.get(id);
    if (known !== undefined) return known;
    let h = 0;
    for (const next of graph.get(id) ?? []) h = Math.max(h, 1 + heightOf(next));
    height.set(id, h);
    return h;
  };
  // Longest path from any chain down to the changed chain, then through the new edge and below its target.
  const depthTo = new Map<string, number>();
  const parents = new Map<string, string[]>();
  for (const [from, tos] of graph) for (const to of tos) parents.set(to, [...(parents.get(to) ?? []), from]);
  const depthOf = (id: string): number => {
    const known = depthTo.get(id);
    if (known !== undefined) return known;
    let d = 0;
    for (const p of parents.get(id) ?? []) d = Math.max(d, 1 + depthOf(p));
    depthTo.set(id, d);
    return d;
  };
  const deepest = depthOf(changed.chainId) + 1 + heightOf(changed.jumpChainId);
  if (deepest > MAX_JUMP_DEPTH) {
    throw new TopologyError(
      'invalid',
      `jumpChainId: a jump from chain ${name(changed.chainId)} to chain ${name(changed.jumpChainId)} nests jumps ${deepest} deep; the kernel datapath allows ${MAX_JUMP_DEPTH}`,
      'jumpChainId',
    );
  }
}

/** A path of chain ids from `from` to `to` (both included), or undefined. */
function pathBetween(graph: Map<string, Set<string>>, from: string, to: string): string[] | undefined {
  const seen = new Set<string>();
  const walk = (id: string): string[] | undefined => {
    if (id === to) return [id];
    if (seen.has(id)) return undefined;
    seen.add(id);
    for (const next of graph.get(id) ?? []) {
      const rest = walk(next);
      if (rest) return [id, ...rest];
    }
    return undefined;
  };
  return walk(from);
}
