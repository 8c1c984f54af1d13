// `bees status`: the local agent's health on one screen (core/agent/agent-status.ts): the store connection and its
// session, the datapath's reconcile passes and lag, what serves workloads (the workload socket with the CNI route,
// the Docker plugin, Kubernetes), local ports and the last errors; plus the API and what the store holds. Exit code
// 1 when the agent is unhealthy or the store does not answer, so scripts and probes can use it. Against a plain
// `bees api` (no agent behind it) only the API and store part is shown.
import { ApiError } from '../api/client.js';
import type { AgentStatus } from '../agent/agent-status.js';
import { apiClient, details, parse, printJson, table, type Command } from './command.js';

function ago(iso: string | undefined, now = Date.now()): string {
  if (!iso) return 'never';
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  return s < 120 ? `${s}s ago` : s < 7200 ? `${Math.round(s / 60)}m ago` : `${Math.round(s / 3600)}h ago`;
}

function duration(s: number): string {
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  if (s < 172_800) return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86_400)}d`;
}

/** The agent part for people: a few "key: value" blocks and two tables. */
function agentText(a: AgentStatus): string {
  const r = a.reconcile;
  const store = a.store.up
    ? `connected${a.store.session ? ` (session ${a.store.session})` : ''}`
    : `UNREACHABLE: ${a.store.reason ?? 'no reason given'}`;
  const out = [
    details([
      ['agent', a.healthy ? 'healthy' : 'UNHEALTHY'],
      ...a.problems.map((p): [string, string] => ['problem', p]),
      ['host', a.host.id],
      ['up', `${duration(a.uptimeSeconds)} (since ${a.startedAt})`],
      ['store', `${a.store.url}: ${store}`],
      ...(a.store.connectionResets !== undefined ? [['connection resets', String(a.store.connectionResets)] as [string, string]] : []),
      [
        'reconcile',
        `${r.passes} passes, last ${ago(r.lastPassAt)}${r.lastPassMs !== undefined ? ` in ${r.lastPassMs} ms` : ''}; ` +
          (r.lastError ? `last error: ${r.lastError}` : 'converged'),
      ],
      [
        'reconcile lag',
        r.lag === undefined
          ? `unknown (applied ${r.appliedSeq}, store sequence unreadable)`
          : `${r.lag} (store ${r.storeSeq}, applied ${r.appliedSeq})`,
      ],
      [
        'flow log',
        a.datapath.flowLog.running ? `running${a.datapath.flowLog.lost ? `, ${a.datapath.flowLog.lost} lost` : ''}` : 'not running',
      ],
      ...(a.datapath.fastPath ? [['fast path', fastPathLine(a.datapath.fastPath)] as [string, string]] : []),
      ['local ports', String(a.ports.local)],
    ]),
    '\n',
    table(
      ['ADAPTER', 'STATE', 'DETAIL'],
      a.adapters.map((x) => [x.name, x.ok ? 'ok' : 'FAILING', x.detail]),
    ),
    '\n',
    a.lastErrors.length
      ? table(
          ['WHEN', 'SOURCE', 'ERROR'],
          [...a.lastErrors].reverse().map((e) => [ago(e.at), e.source, `${e.message}${e.count > 1 ? ` (x${e.count})` : ''}`]),
        )
      : 'last errors: none\n',
  ];
  return out.join('');
}

/** "on, 3 ports; 120 frames carried, 8 to the bridge" or why it is off. */
function fastPathLine(f: NonNullable<AgentStatus['datapath']['fastPath']>): string {
  if (f.state !== 'on') return `${f.state}${f.reason ? `: ${f.reason}` : ''}`;
  const o = f.outcomes;
  const fast = (o.tx_fast ?? 0) + (o.rx_fast ?? 0);
  const bridge = (o.tx_bridge ?? 0) + (o.rx_bridge ?? 0) + (o.rx_nat ?? 0) + (o.tx_spoof ?? 0);
  return `on, ${f.ports} port${f.ports === 1 ? '' : 's'}; ${fast} frames carried, ${bridge} left to the bridge${f.reason ? `; last failure: ${f.reason}` : ''}`;
}

const status: Command = {
  name: 'status',
  summary: "Show the local agent's health (store, datapath, adapters, last errors) and the API's store",
  usage: `bees status [--json]
  The agent behind the API endpoint (default: this host's): store connection and session, reconcile passes and lag,
  the workload socket and the adapters on it (CNI, Docker plugin, Kubernetes), local ports, the last errors.
  Exit code 1 when the agent is unhealthy or the store does not answer.`,
  async run(args, io) {
    const { values } = parse(status, args, {}, { min: 0, max: 0 });
    const api = apiClient(values, io);
    const st = await api.status();
    // A plain `bees api` has no agent behind it: 404 on the agent's route.
    let agent: AgentStatus | undefined;
    try {
      agent = await api.request<AgentStatus>('GET', '/v1/agent/status');
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 404)) throw e;
    }
    if (values.json) printJson(io, { api: api.endpoint, ...st, ...(agent ? { agent } : {}) });
    else {
      const counts = Object.entries(st.counts)
        .filter(([, n]) => n)
        .map(([k, n]) => `${k}=${n}`)
        .join(' ');
      if (agent) io.out(agentText(agent) + '\n');
      io.out(
        details([
          ['api', api.endpoint],
          ['api version', st.version],
          ['store', st.store],
          ['store reachable', st.reachable ? 'yes' : `no (${st.error ?? 'unknown error'})`],
          ['objects', counts || 'none'],
          ...(agent ? [] : [['agent', 'none behind this API (a plain `bees api`)'] as [string, string]]),
        ]),
      );
    }
    return st.reachable && (agent?.healthy ?? true) ? 0 : 1;
  },
};

export const commands = [status];
