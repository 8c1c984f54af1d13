// ============================================================================================================
// STAND-IN FOR THE BEES AGENT — NOT THE AGENT.
// Until core/agent serves the workload API, the plugin's tests point it at this server: it speaks the same
// JSON-over-HTTP on a unix socket (core/workload/types.ts) and does the minimum real kernel work (a veth pair,
// one address, a default route) so chained reference plugins have something real to act on. It has no store,
// no virtual topology and no datapath. The real-agent tests replace it as soon as the agent lands.
// ============================================================================================================
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { AttachRequest, AttachResult, CheckRequest, DetachRequest, GcRequest, WorkloadErrorBody, WorkloadRef } from '../../core/workload/types.js';
import { sh } from '../harness/netns.js';

interface Attachment { req: AttachRequest; host: string; address: string; gateway: string }
interface Net { cidr: string; gateway: string; next: number; used: Set<string> }

export interface StandInAgent {
  socket: string;
  /** Every request received, in order: what the plugin translated CNI into. */
  requests: { path: string; body: unknown }[];
  attachments: Map<string, Attachment>;
  ready: boolean;
  close(): Promise<void>;
}

class Refusal extends Error {
  constructor(readonly status: number, readonly body: WorkloadErrorBody) { super(body.error); }
}

const keyOf = (r: WorkloadRef) => `${r.orchestrator}/${r.workloadId}/${r.ifname}`;

export async function startStandInAgent(dir: string): Promise<StandInAgent> {
  const socket = join(dir, 'standin-workload.sock');
  const nets = new Map<string, Net>();
  const agent: StandInAgent = { socket, requests: [], attachments: new Map(), ready: true, close: async () => undefined };

  async function attach(req: AttachRequest): Promise<AttachResult> {
    if (!req.netns) throw new Refusal(400, { error: 'netns is required', code: 'invalid', field: 'netns' });
    if (agent.attachments.has(keyOf(req))) throw new Refusal(409, { error: `${keyOf(req)} is already attached`, code: 'conflict' });
    const netKey = `${req.tenant ?? 'default'}/${req.network}`;
    let net = nets.get(netKey);
    if (!net) {
      const s = req.create?.subnets[0];
      if (!s) throw new Refusal(404, { error: `network ${netKey} does not exist`, code: 'not_found', field: 'network' });
      const base = s.cidr.split('/')[0]!.split('.').slice(0, 3).join('.');
      net = { cidr: s.cidr, gateway: s.gateway ?? `${base}.1`, next: 2, used: new Set() };
      nets.set(netKey, net);
    }
    const prefix = net.cidr.split('/')[1]!;
    const base = net.cidr.split('/')[0]!.split('.').slice(0, 3).join('.');
    let ip = req.ips?.[0]?.split('/')[0];
    if (ip && net.used.has(ip)) throw new Refusal(409, { error: `${ip} is in use`, code: 'conflict', field: 'ips' });
    if (!ip) {
      const size = 2 ** (32 - Number(prefix));
      while (net.next < size - 1 && net.used.has(`${base}.${net.next}`)) net.next++;
      if (net.next >= size - 1) throw new Refusal(409, { error: `no free address left in ${net.cidr}`, code: 'exhausted' });
      ip = `${base}.${net.next++}`;
    }
    const host = `sb${createHash('sha1').update(keyOf(req)).digest('hex').slice(0, 10)}`;
    const tmp = `st${createHash('sha1').update(`${keyOf(req)}tmp`).digest('hex').slice(0, 10)}`;
    const address = `${ip}/${prefix}`;
    const nsArg = req.netns.startsWith('/run/netns/') ? req.netns.slice('/run/netns/'.length) : req.netns;
    await sh('ip', ['link', 'add', host, 'type', 'veth', 'peer', 'name', tmp]);
    try {
      await sh('ip', ['link', 'set', tmp, 'netns', req.netns]);
      await sh('ip', ['-n', nsArg, 'link', 'set', tmp, 'name', req.ifname]);
      if (req.mac) await sh('ip', ['-n', nsArg, 'link', 'set', req.ifname, 'address', req.mac]);
      await sh('ip', ['-n', nsArg, 'addr', 'add', address, 'dev', req.ifname]);
      await sh('ip', ['-n', nsArg, 'link', 'set', req.ifname, 'up']);
      await sh('ip', ['-n', nsArg, 'route', 'add', 'default', 'via', net.gateway, 'dev', req.ifname]);
      await sh('ip', ['link', 'set', host, 'up']);
    } catch (e) {
      await sh('ip', ['link', 'del', host]).catch(() => undefined);
      throw new Refusal(400, { error: `cannot wire ${req.ifname} into ${req.netns}: ${(e as Error).message}`, code: 'invalid', field: 'netns' });
    }
    net.used.add(ip);
    agent.attachments.set(keyOf(req), { req, host, address, gateway: net.gateway });
    const link = (ns: string | undefined, dev: string) => sh('ip', [...(ns ? ['-n', ns] : []), '-j', 'link', 'show', dev]).then((s) => JSON.parse(s)[0] as { address: string; mtu: number });
    const [inner, outer] = await Promise.all([link(nsArg, req.ifname), link(undefined, host)]);
    return {
      portId: `standin-${host}`, bridgeId: `standin-${netKey}`, tenantId: req.tenant ?? 'default',
      interface: { name: req.ifname, mac: inner.address, mtu: inner.mtu, sandbox: req.netns },
      hostInterface: { name: host, mac: outer.address },
      ips: [{ address, gateway: net.gateway, family: 4 }],
      routes: [{ dst: '0.0.0.0/0', gw: net.gateway }],
      mtu: inner.mtu,
    };
  }

  async function remove(key: string): Promise<void> {
    const a = agent.attachments.get(key);
    if (!a) return;
    agent.attachments.delete(key);
    await sh('ip', ['link', 'del', a.host]).catch(() => undefined); // gone with its netns already: fine
    nets.get(`${a.req.tenant ?? 'default'}/${a.req.network}`)?.used.delete(a.address.split('/')[0]!);
  }

  async function handle(path: string, body: unknown): Promise<unknown> {
    switch (path) {
      case '/v1/status': return { ready: agent.ready, hostId: 'stand-in', store: 'none', ...(agent.ready ? {} : { reason: 'stand-in told to be unready' }) };
      case '/v1/attach': return attach(body as AttachRequest);
      case '/v1/detach': {
        const r = body as DetachRequest;
        if (!agent.attachments.has(keyOf(r))) throw new Refusal(404, { error: `${keyOf(r)} is not attached`, code: 'not_found' });
        await remove(keyOf(r));
        return {};
      }
      case '/v1/check': {
        const r = body as CheckRequest;
        const a = agent.attachments.get(keyOf(r));
        if (!a) throw new Refusal(404, { error: `${keyOf(r)} is not attached`, code: 'not_found' });
        const problems: string[] = [];
        try {
          const ns = r.netns.startsWith('/run/netns/') ? r.netns.slice('/run/netns/'.length) : r.netns;
          const links = JSON.parse(await sh('ip', ['-n', ns, '-j', 'addr', 'show', 'dev', r.ifname])) as { addr_info: { local: string; prefixlen: number }[] }[];
          if (!links[0]?.addr_info.some((x) => `${x.local}/${x.prefixlen}` === a.address)) problems.push(`${r.ifname} lacks ${a.address}`);
        } catch {
          problems.push(`${r.ifname} is missing from ${r.netns}`);
        }
        return { ok: problems.length === 0, problems };
      }
      case '/v1/gc': {
        const r = body as GcRequest;
        const removed: WorkloadRef[] = [];
        for (const [key, a] of [...agent.attachments]) {
          if (a.req.orchestrator !== r.orchestrator || (r.network && a.req.network !== r.network)) continue;
          if (r.valid.some((v) => v.workloadId === a.req.workloadId && v.ifname === a.req.ifname)) continue;
          await remove(key);
          removed.push({ orchestrator: a.req.orchestrator, workloadId: a.req.workloadId, ifname: a.req.ifname });
        }
        return { removed };
      }
    }
    throw new Refusal(404, { error: `no route ${path}`, code: 'not_found' });
  }

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let text = '';
    req.on('data', (c) => (text += c));
    req.on('end', () => {
      const path = req.url ?? '';
      let body: unknown = {};
      try {
        body = text ? JSON.parse(text) : {};
      } catch {
        res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'body is not JSON', code: 'invalid' }));
        return;
      }
      agent.requests.push({ path, body });
      handle(path, body).then(
        (out) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(out)),
        (e) => {
          const r = e instanceof Refusal ? e : new Refusal(500, { error: (e as Error).message, code: 'internal' });
          res.writeHead(r.status, { 'content-type': 'application/json' }).end(JSON.stringify(r.body));
        },
      );
    });
  });
  await rm(socket, { force: true });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(socket, resolve));
  agent.close = async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    for (const key of [...agent.attachments.keys()]) await remove(key);
    await rm(socket, { force: true });
  };
  return agent;
}
