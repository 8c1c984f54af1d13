// The Grafana dashboard shipped with the chart (charts/midonet-bees/dashboards/bees.json) is valid JSON and every
// query names only metrics the agent's registry really exports (core/agent/metrics.ts), so a renamed metric
// breaks this test rather than a panel.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { AgentMetrics } from '../agent/metrics.js';

const DASHBOARD = new URL('../../charts/midonet-bees/dashboards/bees.json', import.meta.url);
/** PromQL words that are not metric names. */
const PROMQL = new Set(['sum', 'by', 'rate', 'increase', 'histogram_quantile', 'le', 'instance', 'without', 'avg', 'max', 'min']);

test('every dashboard query names a metric the agent exports', async (t) => {
  const d = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { panels: { title: string; targets: { expr: string }[] }[] };
  // Values do not matter here, only the names the registry exports.
  const m = new AgentMetrics(
    { localPorts: () => 0, storeUp: () => 1, storeConnectionResets: () => 0 },
    {
      localPorts: () => [],
      linkStats: () => Promise.resolve(new Map()),
      dropRuleIds: () => new Set(),
      ruleCounters: () => Promise.resolve([]),
      storeSeq: () => Promise.resolve(0),
      appliedSeq: () => 0,
    },
  );
  const exported = new Set<string>();
  for (const x of await m.registry.getMetricsAsJSON()) {
    exported.add(x.name);
    if (String(x.type) === 'histogram') for (const s of ['_bucket', '_sum', '_count']) exported.add(x.name + s);
  }
  t.true(d.panels.length >= 8);
  let names = 0;
  for (const p of d.panels) {
    t.true(p.targets.length > 0, p.title);
    for (const { expr } of p.targets) {
      // Identifiers outside label matchers and strings: the metric names and PromQL functions.
      const bare = expr
        .replace(/\b(by|without) *\([^)]*\)/g, '')
        .replace(/\{[^}]*\}/g, '')
        .replace(/\[[^\]]*\]/g, '')
        .replace(/"[^"]*"/g, '');
      for (const word of bare.match(/[a-zA-Z_:][\w:]*/g) ?? []) {
        if (PROMQL.has(word)) continue;
        names++;
        t.true(exported.has(word), `panel "${p.title}": ${word} is not exported by the agent`);
      }
    }
  }
  t.true(names >= 12);
});
