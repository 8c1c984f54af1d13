// Our own nftables commits, by the ruleset generation each made. The kernel counts commits (NFT_MSG_GETGEN: +1 per
// commit, whoever makes it), so a generation g that one of our commits made, when something of ours was last known
// as of g - 1, proves nobody else committed in between. chain-edit.ts keeps trusting the handles it recorded
// across such commits instead of dumping the chain (~35 ms at 10,000 rules) after every unrelated commit of ours
// (a plug, a set element, a binding). `touches` says, conservatively, whether that commit may have changed a chain.
type Touches = (chain: string) => boolean;

interface Listener {
  /** Whether the listener keeps anything for this namespace (else the generation is not even asked for). */
  interested(netns: string | undefined): boolean;
  committed(netns: string | undefined, generation: number, touches: Touches): void;
}

const listeners: Listener[] = [];

export function onOwnCommit(l: Listener): void {
  listeners.push(l);
}

export const ownCommitWanted = (netns: string | undefined): boolean => listeners.some((l) => l.interested(netns));

/** One commit of ours made `generation` in `netns` (-1: unknown, which tells nothing). */
export function ownCommit(netns: string | undefined, generation: number, touches: Touches): void {
  if (generation < 0) return;
  for (const l of listeners) if (l.interested(netns)) l.committed(netns, generation, touches);
}

/** `touches` of an nft script: any chain named in it, and every chain when it deletes or flushes a table. */
export function scriptTouches(script: string): Touches {
  if (/\b(delete|destroy|flush) (table|ruleset)\b/.test(script)) return () => true;
  return (chain) => script.includes(chain);
}
