// The benchmark report's honesty rules: comparisons come from interleaved rounds, say what they compare, and show
// the spread of their rounds.
import test from 'ava';
import {
  checkSection,
  interleavedRounds,
  latencyFigures,
  markdown,
  median,
  pairedRatio,
  roundsSpread,
  roundTo,
  type BenchSection,
} from '../report.js';

test('interleaved rounds alternate which side goes first', async (t) => {
  const order: string[] = [];
  const r = await interleavedRounds(
    4,
    async (i) => {
      order.push(`a${i}`);
      return i;
    },
    async (i) => {
      order.push(`b${i}`);
      return 10 + i;
    },
  );
  t.deepEqual(order, ['a0', 'b0', 'b1', 'a1', 'a2', 'b2', 'b3', 'a3']);
  t.deepEqual(r, { a: [0, 1, 2, 3], b: [10, 11, 12, 13] });
});

test('a paired ratio is the median of the per-round ratios, and keeps them', (t) => {
  t.deepEqual(pairedRatio([2, 3, 10], [1, 1, 4]), { ratio: 2.5, roundRatios: [2, 3, 2.5] });
  t.throws(() => pairedRatio([1, 2], [1]), { message: /rounds on both sides/ });
});

test('the median of an even number of rounds is the mean of the two middle ones, not the lower', (t) => {
  t.is(median([3, 1, 2]), 2);
  t.is(median([1, 3]), 2);
  t.is(median([4, 1, 3, 2]), 2.5);
  t.is(pairedRatio([1, 3], [1, 1]).ratio, 2);
  t.true(Number.isNaN(median([])));
});

test('figures are rounded to the digits a section asks for: latency p50/p99 with n, per-round median/min/max', (t) => {
  t.is(roundTo(1.23456, 2), 1.23);
  t.is(roundTo(1.25, 1), 1.3);
  const xs = [4.444, 1.111, 3.333, 2.222, 100.555];
  t.deepEqual(latencyFigures(xs, 1), { p50: 3.3, p99: 100.6, n: 5 });
  t.deepEqual(roundsSpread(xs, 2), { median: 3.33, min: 1.11, max: 100.56 });
});

const section = (row: Partial<BenchSection['rows'][number]>): BenchSection => ({
  title: 'T',
  method: 'm',
  rows: [{ name: 'r', ours: { p50: 2 }, reference: { p50: 1 }, unit: 'ms', ...row }],
});

test('a ratio must say what it compares and come from enough rounds', (t) => {
  t.throws(() => checkSection(section({ ratio: 2, roundRatios: [2, 2, 2] })), { message: /does not say what it compares/ });
  t.throws(() => checkSection(section({ ratio: 2, roundRatios: [2], compares: 'x ÷ y' })), { message: /from 1 rounds/ });
  t.throws(() => checkSection(section({ ratio: 2, compares: 'x ÷ y' })), { message: /from 0 rounds/ });
  t.notThrows(() => checkSection(section({ ratio: 2, roundRatios: [1.9, 2, 2.4], compares: 'x ÷ y' })));
  t.notThrows(() => checkSection(section({})), 'a row without a ratio claims no comparison');
});

test('the markdown names the two sides, the spread of the rounds and what is compared; no blanket claim', (t) => {
  const s = section({ ratio: 2, roundRatios: [1.9, 2, 2.4], compares: 'file ops/s ÷ ZooKeeper ops/s' });
  const md = markdown([{ ...s, columns: ['file store', 'ZooKeeper'], area: 'store', measuredAt: 'now', scale: 1 }], []);
  t.regex(md, /\| measurement \| file store \| ZooKeeper \| ratio \| rounds \(min–max\) \|/);
  t.regex(md, /\| r \| p50 2 \| p50 1 \| 2\.00 \| 1\.90–2\.40 \(3 rounds\) \| ms \| file ops\/s ÷ ZooKeeper ops\/s \|/);
  t.notRegex(md, /Ours and the reference run in the same process/);
});
