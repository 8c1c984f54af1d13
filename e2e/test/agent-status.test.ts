// Issue 13 item 4 against a real agent on a harness host (real ZooKeeper, real datapath): `bees status` shows the
// agent's health on one screen and exits 1 once the store is gone; one request id follows one workload operation
// through every agent log line it wrote, is answered in X-Request-Id, and is named in a failed CNI ADD's details.
import test from 'ava';
import { spawn } from 'node:child_process';
import { request } from 'node:http';
import type { AgentStatus } from '../../core/agent/agent-status.js';
import { beesArgv } from '../../testbed/bees-entry.js';
import { eventually, startCluster, type Cluster } from '../../testbed/cluster.js';
import { CNI_PATH_ROUTE, EXIT_CODE_HEADER, headerOf } from '../../cni/plugin/protocol.js';

function bees(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const [cmd, ...pre] = beesArgv();
    const p = spawn(cmd!, [...pre, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** One POST on a unix socket: status, headers and body as text. */
function post(
  socket: string,
  path: string,
  body: string,
  headers: Record<string, string>,
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { socketPath: socket, path, method: 'POST', headers: { 'content-length': Buffer.byteLength(body), ...headers }, timeout: 60_000 },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString('utf8')));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** The agent's log lines written by fastify's logger (JSON), parsed. */
function jsonLines(log: string): Record<string, unknown>[] {
  return log
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .flatMap((l) => {
      try {
        return [JSON.parse(l) as Record<string, unknown>];
      } catch {
        return [];
      }
    });
}

let c: Cluster;
test.before(async () => {
  // JSON lines for everything (--log-format json): the request-id checks below read the agent's log as JSON.
  c = await startCluster({ hosts: 1, agentArgs: ['--log-format', 'json'] });
});
test.after.always(async () => {
  await c?.close();
});

test.serial('one request id on every agent log line of one attach, answered in X-Request-Id', async (t) => {
  t.timeout(120_000);
  c.logAgentsOnFailure(t);
  const h = c.host(0);
  const netns = await c.harness.addWorkload(h.host, 'rid-a');
  const workloadId = `${c.harness.tag}-rid-a`;
  const body = JSON.stringify({
    orchestrator: 'cli',
    workloadId,
    ifname: 'eth0',
    netns,
    network: 'rid',
    create: { subnets: [{ cidr: '10.46.0.0/24' }] },
  });
  const res = await post(`${h.runDir}/workload.sock`, '/v1/attach', body, {
    'content-type': 'application/json',
    'x-request-id': 'rid-attach-1',
  });
  t.is(res.status, 200, res.body);
  t.is(res.headers['x-request-id'], 'rid-attach-1', "the caller's id is answered");
  // fastify writes "request completed" once the answer is sent: wait for it to reach the log file.
  const lines = await eventually(
    async () => {
      const all = jsonLines(c.agentLog(h));
      return all.some((l) => l.reqId === 'rid-attach-1' && l.msg === 'request completed') ? all : undefined;
    },
    5000,
    'the request completed line in the agent log',
  );
  const mine = lines.filter((l) => l.reqId === 'rid-attach-1');
  t.log(mine.map((l) => l.msg));
  // fastify's request lines and the operation's own: received, started, done, answered.
  t.true(mine.some((l) => l.msg === 'incoming request'));
  t.true(mine.some((l) => l.msg === 'attach started' && l.workload === `cli:${workloadId}` && l.network === 'rid'));
  t.true(mine.some((l) => l.msg === 'attach done' && typeof l.port === 'string'));
  t.true(mine.some((l) => l.msg === 'request completed'));
  // Every line that names this workload or its port is one of this operation's.
  const portId = (JSON.parse(res.body) as { portId: string }).portId;
  const naming = lines.filter((l) => JSON.stringify(l).includes(workloadId) || JSON.stringify(l).includes(portId));
  t.true(naming.length >= 2);
  t.true(
    naming.every((l) => l.reqId === 'rid-attach-1'),
    JSON.stringify(naming.filter((l) => l.reqId !== 'rid-attach-1')),
  );

  // Without a caller's id the agent makes one, and answers it.
  const again = await post(`${h.runDir}/workload.sock`, '/v1/attach', body, { 'content-type': 'application/json' });
  const made = String(again.headers['x-request-id']);
  t.regex(made, /^[0-9a-f-]{36}$/);
  t.true(jsonLines(c.agentLog(h)).some((l) => l.reqId === made && l.msg === 'attach done'));
});

test.serial("a failed CNI ADD names the agent's request id in its details, and the agent's log has its lines", async (t) => {
  t.timeout(120_000);
  c.logAgentsOnFailure(t);
  const h = c.host(0);
  const netns = await c.harness.addWorkload(h.host, 'rid-cni');
  const conf = JSON.stringify({ cniVersion: '1.0.0', name: 'no-such-network', type: 'midonet', createNetwork: false });
  const res = await post(`${h.runDir}/workload.sock`, CNI_PATH_ROUTE, conf, {
    'content-type': 'application/json',
    [headerOf('CNI_COMMAND')]: 'ADD',
    [headerOf('CNI_CONTAINERID')]: `${c.harness.tag}-ridcni`,
    [headerOf('CNI_NETNS')]: encodeURIComponent(netns),
    [headerOf('CNI_IFNAME')]: 'eth0',
    [headerOf('CNI_PATH')]: '/opt/cni/bin',
  });
  t.is(res.headers[EXIT_CODE_HEADER], '1', res.body);
  const err = JSON.parse(res.body) as { code: number; msg: string; details?: string };
  t.log(err);
  const id = /agent request id (\S+)\)?$/.exec(err.details ?? '')?.[1]?.replace(/\)$/, '');
  t.truthy(id, `details name the request id: ${err.details}`);
  t.is(res.headers['x-request-id'], id);
  const mine = jsonLines(c.agentLog(h)).filter((l) => l.reqId === id);
  t.true(
    mine.some((l) => l.msg === 'attach failed: ' + String(l.error) && /no-such-network/.test(String(l.error))),
    JSON.stringify(mine),
  );
});

test.serial('bees status: healthy on one screen, --json, and exit 1 once the store is gone', async (t) => {
  t.timeout(180_000);
  c.logAgentsOnFailure(t);
  const h = c.host(0);
  const env = { BEES_API: `unix:${h.runDir}/api.sock` };
  // The attaches above are applied: the lag settles at 0.
  const settled = await eventually(
    async () => {
      const r = await bees(['status', '--json'], env);
      const s = JSON.parse(r.stdout) as { agent: AgentStatus; reachable: boolean };
      return r.code === 0 && s.agent.reconcile.lag === 0 ? s : undefined;
    },
    20_000,
    'bees status --json healthy with lag 0',
    500,
  );
  const a = settled.agent;
  t.true(a.healthy);
  t.deepEqual(a.problems, []);
  t.is(a.host.id, h.hostId);
  t.true(a.store.up);
  t.regex(a.store.url, /^zk:\/\//);
  t.regex(a.store.session ?? '', /^(0x)?[0-9a-f]+$/, 'the ZooKeeper session');
  t.true(a.reconcile.passes > 0);
  t.is(a.reconcile.storeSeq, a.reconcile.appliedSeq);
  t.true(a.ports.local >= 1, 'the attach of the first test');
  const socket = a.adapters.find((x) => x.name === 'workload socket');
  t.true(socket?.ok);
  t.regex(socket?.detail ?? '', /workload\.sock.*POST \/v1\/cni/, 'the CNI route on the workload socket');
  t.true(
    a.lastErrors.some((e) => e.source === 'attach' && /no-such-network/.test(e.message) && /request id/.test(e.message)),
    'the failed ADD of the previous test, with its request id',
  );

  const text = await bees(['status'], env);
  t.is(text.code, 0, text.stderr);
  t.log(text.stdout);
  t.regex(text.stdout, /^agent:\s+healthy$/m);
  t.regex(text.stdout, /^store:\s+zk:\/\/\S+: connected \(session /m);
  t.regex(text.stdout, /^reconcile lag:\s+0 /m);
  t.regex(text.stdout, /^ADAPTER\s+STATE\s+DETAIL$/m);
  t.regex(text.stdout, /^workload socket\s+ok\s+unix:/m);
  t.regex(text.stdout, /^WHEN\s+SOURCE\s+ERROR$/m);

  // The store goes away: the agent says so, and `bees status` fails.
  await c.zk.kill();
  const down = await eventually(
    async () => {
      const r = await bees(['status'], env);
      return r.code !== 0 && /UNHEALTHY/.test(r.stdout) ? r : undefined;
    },
    60_000,
    'bees status unhealthy without the store',
    1000,
  );
  t.log(down.stdout);
  t.is(down.code, 1);
  t.regex(down.stdout, /^problem:\s+store zk:\/\/\S+ unreachable/m);
  t.regex(down.stdout, /UNREACHABLE/);

  // --log-format json: every line the agent wrote is a JSON object with a level; losing the store is a warning.
  const raw = c
    .agentLog(h)
    .split('\n')
    .filter((l) => l.trim() !== '');
  const parsed = jsonLines(c.agentLog(h));
  t.is(parsed.length, raw.length, raw.filter((l) => !l.startsWith('{')).join('\n'));
  t.true(parsed.every((l) => typeof l.level === 'number' && typeof l.msg === 'string'));
  t.true(
    parsed.some((l) => l.level === 30 && /^ready: api /.test(String(l.msg))),
    'the ready line, at info',
  );
  t.true(
    await eventually(
      async () => jsonLines(c.agentLog(h)).some((l) => l.level === 40 && /^store unreachable/.test(String(l.msg))) || undefined,
      30_000,
      'a warning for the lost store',
    ).catch(() => false),
    'the lost store logged at warn (40)',
  );
});
