// The workload server's answers go through their response schemas: a field the protocol does not name never reaches
// a client, and every field it does name arrives. The Workloads behind it is a stand-in returning fixed results:
// what is under test is the HTTP face (serialisation), not attaching, which the agent tests cover for real.
import test from 'ava';
import { buildWorkloadServer } from '../agent/workload-server.js';
import type { Workloads } from '../agent/workloads.js';
import type { AttachResult, GcResult, StatusResult } from '../workload/types.js';

const attached: AttachResult = {
  portId: 'p1',
  bridgeId: 'b1',
  tenantId: 't1',
  interface: { name: 'eth0', mac: '02:00:00:00:00:01', mtu: 1450, sandbox: '/run/netns/x' },
  hostInterface: { name: 'bees-p1', mac: '' },
  peerInterface: 'bees-p1-peer',
  ips: [{ address: '10.1.0.5/24', gateway: '10.1.0.1', family: 4 }],
  routes: [{ dst: '0.0.0.0/0', gw: '10.1.0.1' }],
  dns: { nameservers: ['10.1.0.2'], search: ['svc'] },
  mtu: 1450,
};

function server() {
  const leak = { internalSecret: 'store-credentials' };
  const stand = {
    attach: async () => ({ ...attached, ...leak, interface: { ...attached.interface, ...leak } }),
    detach: async () => undefined,
    check: async () => ({ ok: true, problems: [], ...leak }),
    gc: async (): Promise<GcResult> => ({ removed: [{ orchestrator: 'cni', workloadId: 'w', ifname: 'eth0', ...leak }] }),
    status: (): StatusResult => ({ ready: true, hostId: 'h1', store: 'file:///x', ...leak }),
  };
  // The server calls only these five methods; a whole Workloads needs an agent and a kernel datapath.
  return buildWorkloadServer(stand as unknown as Workloads);
}

const ref = { orchestrator: 'cni', workloadId: 'w', ifname: 'eth0' };

test('attach answers every AttachResult field and nothing else', async (t) => {
  const app = server();
  const res = await app.inject({ method: 'POST', url: '/v1/attach', payload: { ...ref, network: 'n', netns: '/run/netns/x' } });
  t.is(res.statusCode, 200);
  t.deepEqual(res.json(), attached);
  t.false(res.body.includes('internalSecret'));
  await app.close();
});

test('check, gc and status answers drop fields the protocol does not name', async (t) => {
  const app = server();
  const check = await app.inject({ method: 'POST', url: '/v1/check', payload: { ...ref, netns: '/run/netns/x' } });
  t.deepEqual(check.json(), { ok: true, problems: [] });
  const gc = await app.inject({ method: 'POST', url: '/v1/gc', payload: { orchestrator: 'cni', valid: [] } });
  t.deepEqual(gc.json(), { removed: [ref] });
  const status = await app.inject({ method: 'GET', url: '/v1/status' });
  t.deepEqual(status.json(), { ready: true, hostId: 'h1', store: 'file:///x' });
  const detach = await app.inject({ method: 'POST', url: '/v1/detach', payload: ref });
  t.deepEqual(detach.json(), {});
  await app.close();
});
