// The shortest edit between a chain's old and new rule texts (Myers' O((N+M)·D) difference, after stripping the
// common head and tail), so a chain that changed by a few rules is edited rule by rule (chain-edit.ts) instead of
// rewritten. Bounded: beyond `maxEdits` deletions plus insertions the caller rewrites the chain whole.

/** Which rules stay, and the rest deleted or inserted. */
export interface RuleDiff {
  /** Indexes into `old` of the rules to delete, increasing. */
  deleted: number[];
  /** Indexes into `next` of the rules to insert, increasing. */
  inserted: number[];
  /** For each index into `next`: the index into `old` of the same rule kept, or -1 where it is inserted. */
  oldOf: Int32Array;
}

/** The diff of `old` to `next`, or undefined when it takes more than `maxEdits` deletions and insertions. */
export function diffRules(old: readonly string[], next: readonly string[], maxEdits: number): RuleDiff | undefined {
  let head = 0;
  while (head < old.length && head < next.length && old[head] === next[head]) head++;
  let tail = 0;
  while (tail < old.length - head && tail < next.length - head && old[old.length - 1 - tail] === next[next.length - 1 - tail]) tail++;
  const mid = myers(old.slice(head, old.length - tail), next.slice(head, next.length - tail), maxEdits);
  if (!mid) return undefined;
  // Typed arrays and no per-rule objects: a 10,000-rule chain is diffed on every edit.
  const oldOf = new Int32Array(next.length).fill(-1);
  const keptOld = new Uint8Array(old.length);
  const keep = (o: number, n: number) => {
    oldOf[n] = o;
    keptOld[o] = 1;
  };
  for (let i = 0; i < head; i++) keep(i, i);
  for (const [x, y] of mid) keep(x + head, y + head);
  for (let i = tail; i > 0; i--) keep(old.length - i, next.length - i);
  const deleted: number[] = [];
  for (let i = head; i < old.length - tail; i++) if (!keptOld[i]) deleted.push(i);
  const inserted: number[] = [];
  for (let i = head; i < next.length - tail; i++) if (oldOf[i] === -1) inserted.push(i);
  return { deleted, inserted, oldOf };
}

/** The matched pairs of a shortest edit script of a to b, or undefined beyond `maxD` edits. */
function myers(a: readonly string[], b: readonly string[], maxD: number): [number, number][] | undefined {
  const n = a.length;
  const m = b.length;
  if (n + m > 0 && Math.abs(n - m) > maxD) return undefined;
  const max = Math.min(n + m, maxD);
  const off = max + 1;
  let v = new Int32Array(2 * max + 3);
  const trace: Int32Array[] = [];
  let found = -1;
  for (let d = 0; d <= max && found < 0; d++) {
    trace.push(v.slice());
    const nv = v.slice();
    for (let k = -d; k <= d; k += 2) {
      let x = k === -d || (k !== d && v[off + k - 1]! < v[off + k + 1]!) ? v[off + k + 1]! : v[off + k - 1]! + 1;
      let y = x - k;
      while (x < n && y < m && a[x] === b[y]) {
        x++;
        y++;
      }
      nv[off + k] = x;
      if (x >= n && y >= m) {
        found = d;
        break;
      }
    }
    v = nv;
  }
  if (found < 0) return undefined;
  // Walk back through the saved frontiers: trace[d] is the frontier before step d.
  const pairs: [number, number][] = [];
  let x = n;
  let y = m;
  for (let d = found; d > 0; d--) {
    const pv = trace[d]!;
    const k = x - y;
    const down = k === -d || (k !== d && pv[off + k - 1]! < pv[off + k + 1]!);
    const pk = down ? k + 1 : k - 1;
    const px = pv[off + pk]!;
    const py = px - pk;
    const sx = down ? px : px + 1;
    while (x > sx && y > sx - k) pairs.push([--x, --y]);
    x = px;
    y = py;
  }
  while (x > 0 && y > 0) pairs.push([--x, --y]);
  return pairs.reverse();
}
