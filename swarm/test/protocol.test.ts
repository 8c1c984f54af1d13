// The plugin protocol against the real thing, straight to the socket: the plugin hosted by a real agent (store in
// real ZooKeeper, harness host), called the way dockerd calls it. What dockerd sends, malformed calls that must
// change nothing, and the IPAM/network/endpoint lifecycle. One agent serves the three tests, one after the other.
import anyTest, { type TestFn } from 'ava';
import { randomId, workloadPortId } from '../../core/model/ids.js';
import { bridgeIdOf } from '../driver/network-options.js';
import { callPlugin } from './plugin-http.js';
import { eventually, startSingleHost, type SingleHost } from './single-host.js';

const test = anyTest as TestFn<{ env: SingleHost }>;

test.before(async (t) => {
  t.context.env = await startSingleHost({ dockerd: false });
});
test.after.always(async (t) => {
  await t.context.env?.close();
});

async function setup(t: { context: { env: SingleHost } }) {
  const { socket, store } = t.context.env;
  return { socket, driver: { store } };
}

const netId = () => randomId().replace(/-/g, '') + randomId().replace(/-/g, '').slice(0, 32);

test.serial('handshake and capabilities answer empty bodies of any content type', async (t) => {
  const { socket } = await setup(t);
  for (const ct of [null, 'application/vnd.docker.plugins.v1.2+json', 'application/json', 'text/plain']) {
    const r = await callPlugin(socket, 'Plugin.Activate', undefined, ct);
    t.is(r.status, 200, `content type ${ct}`);
    t.deepEqual(r.body, { Implements: ['NetworkDriver', 'IpamDriver'] });
    t.regex(r.contentType ?? '', /application\/vnd\.docker\.plugins\.v1\.\d\+json/);
  }
  t.deepEqual((await callPlugin(socket, 'NetworkDriver.GetCapabilities', undefined)).body, { Scope: 'local', ConnectivityScope: 'local' });
  t.deepEqual((await callPlugin(socket, 'IpamDriver.GetCapabilities', '')).body, {
    RequiresMACAddress: false,
    RequiresRequestReplay: false,
  });
  t.deepEqual((await callPlugin(socket, 'IpamDriver.GetDefaultAddressSpaces', 'null')).body, {
    LocalDefaultAddressSpace: 'MidonetLocal',
    GlobalDefaultAddressSpace: 'MidonetGlobal',
  });
  t.deepEqual(
    (await callPlugin(socket, 'NetworkDriver.DiscoverNew', { DiscoveryType: 1, DiscoveryData: { Address: '10.0.0.1', self: true } })).body,
    {},
  );
});

test.serial('malformed calls are answered 4xx with Err/Error and change nothing', async (t) => {
  const { socket, driver } = await setup(t);
  const id = netId();
  const pool = { AddressSpace: 'MidonetLocal', Pool: '10.9.0.0/24', Gateway: '10.9.0.1/24' };
  const cases: [string, unknown, number, 'Err' | 'Error'][] = [
    ['NetworkDriver.CreateNetwork', '{"NetworkID":', 400, 'Err'],
    ['NetworkDriver.CreateNetwork', {}, 400, 'Err'],
    ['NetworkDriver.CreateNetwork', [id], 400, 'Err'],
    ['NetworkDriver.CreateNetwork', { NetworkID: 42, IPv4Data: [pool] }, 400, 'Err'],
    ['NetworkDriver.CreateNetwork', { NetworkID: id, IPv4Data: [{ Gateway: '10.9.0.1/24' }] }, 400, 'Err'],
    ['NetworkDriver.CreateNetwork', { NetworkID: id, IPv4Data: 'x' }, 400, 'Err'],
    ['NetworkDriver.CreateEndpoint', { NetworkID: id }, 400, 'Err'],
    ['NetworkDriver.CreateEndpoint', { NetworkID: id, EndpointID: 'e', Interface: { Address: 5 } }, 400, 'Err'],
    ['NetworkDriver.Join', { NetworkID: id, EndpointID: 'e' }, 400, 'Err'],
    ['NetworkDriver.DeleteNetwork', '', 400, 'Err'],
    ['NetworkDriver.DiscoverNew', { DiscoveryType: 'node' }, 400, 'Err'],
    ['NetworkDriver.NoSuchMethod', {}, 404, 'Err'],
    ['IpamDriver.RequestPool', 'not json', 400, 'Error'],
    ['IpamDriver.RequestPool', { Pool: 10 }, 400, 'Error'],
    ['IpamDriver.RequestPool', { Pool: '10.9.0.0/24', Options: { tenant: 7 } }, 400, 'Error'],
    ['IpamDriver.RequestAddress', {}, 400, 'Error'],
    ['IpamDriver.ReleaseAddress', { PoolID: 'x' }, 400, 'Error'],
    ['IpamDriver.ReleasePool', { PoolID: '' }, 400, 'Error'],
  ];
  for (const [method, body, status, key] of cases) {
    const r = await callPlugin(socket, method, body);
    t.is(r.status, status, `${method} ${JSON.stringify(body)}`);
    t.is(typeof r.body[key], 'string', `${method}: ${JSON.stringify(r.body)}`);
    t.true((r.body[key] as string).length > 0);
  }
  t.deepEqual(await driver.store.list('Bridge'), []);
  t.deepEqual(await driver.store.list('IpamBlock'), []);
});

test.serial('well-formed but wrong calls are application errors (HTTP 200, Err/Error) and change nothing', async (t) => {
  const { socket, driver } = await setup(t);
  const v4 = [{ AddressSpace: 'MidonetLocal', Pool: '10.9.0.0/24', Gateway: '10.9.0.1/24' }];
  const opts = (o: Record<string, string>) => ({ 'com.docker.network.generic': o });
  const cases: [string, unknown, 'Err' | 'Error', RegExp][] = [
    [
      'NetworkDriver.CreateNetwork',
      { NetworkID: netId(), Options: opts({ colour: 'blue' }), IPv4Data: v4 },
      'Err',
      /unknown option colour/,
    ],
    ['NetworkDriver.CreateNetwork', { NetworkID: netId(), Options: opts({ vni: 'abc' }), IPv4Data: v4 }, 'Err', /vni=abc/],
    ['NetworkDriver.CreateNetwork', { NetworkID: netId(), Options: opts({ mtu: '9' }), IPv4Data: v4 }, 'Err', /mtu=9/],
    ['NetworkDriver.CreateNetwork', { NetworkID: netId(), Options: opts({ tenant: 'a b' }), IPv4Data: v4 }, 'Err', /tenant/],
    [
      'NetworkDriver.CreateNetwork',
      { NetworkID: netId(), IPv4Data: [{ Pool: '10.9.0.0/24', Gateway: '10.8.0.1/24' }] },
      'Err',
      /not inside/,
    ],
    ['NetworkDriver.CreateNetwork', { NetworkID: netId(), IPv4Data: [{ Pool: 'fd00::/64' }] }, 'Err', /IPv4/],
    ['NetworkDriver.CreateNetwork', { NetworkID: netId() }, 'Err', /no address pool/],
    // Swarm's AllocateNetwork passes the user's options flat.
    ['NetworkDriver.AllocateNetwork', { NetworkID: netId(), Options: { colour: 'blue' }, IPv4Data: v4 }, 'Err', /unknown option colour/],
    ['NetworkDriver.AllocateNetwork', { NetworkID: netId(), Options: { mtu: 1400 }, IPv4Data: v4 }, 'Err', /mtu: value must be a string/],
    [
      'NetworkDriver.CreateEndpoint',
      { NetworkID: netId(), EndpointID: 'e1', Interface: { Address: '10.9.0.2/24' } },
      'Err',
      /not a midonet network/,
    ],
    ['NetworkDriver.Join', { NetworkID: netId(), EndpointID: 'e1', SandboxKey: '/var/run/docker/netns/x' }, 'Err', /not a midonet network/],
    ['IpamDriver.RequestPool', { Pool: '', SubPool: '10.1.0.0/25' }, 'Error', /needs a pool/],
    ['IpamDriver.RequestPool', { Pool: '10.1.0.0/24', SubPool: '10.2.0.0/25' }, 'Error', /not a CIDR inside/],
    ['IpamDriver.RequestPool', { Pool: '10.1.0.0/33' }, 'Error', /not a CIDR/],
    ['IpamDriver.RequestPool', { Pool: '10.1.0.0/24', V6: true }, 'Error', /not IPv6/],
    ['IpamDriver.RequestPool', { Pool: '10.1.0.0/24', Options: { color: 'x' } }, 'Error', /unknown IPAM option/],
    ['IpamDriver.RequestAddress', { PoolID: 'garbage' }, 'Error', /unknown pool id/],
    ['IpamDriver.RequestAddress', { PoolID: 'default|10.1.0.0/24|', Address: '10.2.0.1' }, 'Error', /not inside pool/],
    ['IpamDriver.RequestAddress', { PoolID: 'default|10.1.0.0/24|' }, 'Error', /no midonet network/],
  ];
  for (const [method, body, key, re] of cases) {
    const r = await callPlugin(socket, method, body);
    t.is(r.status, 200, `${method} ${JSON.stringify(body)}`);
    t.regex(String(r.body[key]), re, `${method} ${JSON.stringify(body)}`);
  }
  t.deepEqual(await driver.store.list('Bridge'), []);
  t.deepEqual(await driver.store.list('IpamBlock'), []);
});

test.serial('IPAM and network lifecycle: pool, gateway, bridge, addresses, deletion leaves nothing', async (t) => {
  const { socket, driver } = await setup(t);
  const call = async (m: string, b: unknown) => {
    const r = await callPlugin(socket, m, b);
    t.is(r.status, 200, `${m}: ${JSON.stringify(r.body)}`);
    t.is(r.body.Err ?? r.body.Error, undefined, `${m}: ${JSON.stringify(r.body)}`);
    return r.body;
  };
  // Docker's order for `docker network create -d midonet --ipam-driver midonet net`: pool, gateway, CreateNetwork.
  const p1 = await call('IpamDriver.RequestPool', { AddressSpace: 'MidonetLocal', Pool: '', SubPool: '', Options: {}, V6: false });
  t.is(p1.Pool, '10.200.0.0/24');
  const again = await call('IpamDriver.RequestPool', { AddressSpace: 'MidonetLocal', Pool: '10.200.0.0/24' });
  t.is(again.PoolID, p1.PoolID, 'identical pool requests get identical answers');
  const gw = await call('IpamDriver.RequestAddress', {
    PoolID: p1.PoolID,
    Address: '',
    Options: { RequestAddressType: 'com.docker.network.gateway' },
  });
  t.is(gw.Address, '10.200.0.1/24');
  const aux = await call('IpamDriver.RequestAddress', { PoolID: p1.PoolID, Address: '10.200.0.250' });
  t.is(aux.Address, '10.200.0.250/24');

  const id = netId();
  await call('NetworkDriver.CreateNetwork', {
    NetworkID: id,
    Options: { 'com.docker.network.enable_ipv6': false, 'com.docker.network.generic': { tenant: 'acme', vni: '4242', mtu: '1400' } },
    IPv4Data: [
      { AddressSpace: 'MidonetLocal', Pool: '10.200.0.0/24', Gateway: '10.200.0.1/24', AuxAddresses: { printer: '10.200.0.250/24' } },
    ],
    IPv6Data: [],
  });
  const bridge = (await driver.store.get('Bridge', bridgeIdOf(id)))?.value;
  t.truthy(bridge);
  t.is(bridge!.tunnelKey, 4242);
  t.is(bridge!.mtu, 1400);
  t.is(bridge!.labels['docker.network.id'], id);
  t.deepEqual(
    bridge!.subnets.map((s) => [s.cidr, s.gateway, s.reserved]),
    [['10.200.0.0/24', '10.200.0.1', ['10.200.0.250']]],
  );
  const routerPorts = (await driver.store.list('Port')).filter((p) => p.value.type === 'router');
  t.deepEqual(
    routerPorts.map((p) => p.value.ips),
    [['10.200.0.1/24']],
    'gateway on the tenant router',
  );
  // Swarm: every node creates the same network; the second create is a no-op.
  await call('NetworkDriver.CreateNetwork', {
    NetworkID: id,
    Options: { 'com.docker.network.generic': { tenant: 'acme', vni: '4242', mtu: '1400' } },
    IPv4Data: [{ Pool: '10.200.0.0/24', Gateway: '10.200.0.1/24' }],
  });

  // The next "any pool" skips the subnet the bridge holds.
  const p2 = await call('IpamDriver.RequestPool', { Pool: '' });
  t.is(p2.Pool, '10.200.1.0/24');
  await call('IpamDriver.ReleasePool', { PoolID: p2.PoolID });

  // Endpoint addresses come from the bridge's IPAM.
  const poolAcme = await call('IpamDriver.RequestPool', { Pool: '10.200.0.0/24', Options: { tenant: 'acme' } });
  const a1 = await call('IpamDriver.RequestAddress', { PoolID: poolAcme.PoolID, Address: '' });
  t.regex(String(a1.Address), /^10\.200\.0\.\d+\/24$/);
  t.not(a1.Address, '10.200.0.1/24');
  t.not(a1.Address, '10.200.0.250/24');
  const a2 = await call('IpamDriver.RequestAddress', { PoolID: poolAcme.PoolID, Address: '10.200.0.77' });
  t.is(a2.Address, '10.200.0.77/24');
  const taken = await callPlugin(socket, 'IpamDriver.RequestAddress', { PoolID: poolAcme.PoolID, Address: '10.200.0.77' });
  t.truthy(taken.body.Error, 'an address is handed out once');

  // A failing endpoint (a MAC that is no MAC) puts the reservation it took over back.
  const bad = await callPlugin(socket, 'NetworkDriver.CreateEndpoint', {
    NetworkID: id,
    EndpointID: 'ep0',
    Interface: { Address: '10.200.0.77/24', MacAddress: 'not-a-mac' },
  });
  t.regex(String(bad.body.Err), /mac/);
  const again77 = await callPlugin(socket, 'IpamDriver.RequestAddress', { PoolID: poolAcme.PoolID, Address: '10.200.0.77' });
  t.truthy(again77.body.Error, 'still reserved after the failed endpoint');
  // The endpoint takes its address over from the IPAM reservation; Join hands libnetwork the workload end.
  t.deepEqual(
    await call('NetworkDriver.CreateEndpoint', { NetworkID: id, EndpointID: 'ep1', Interface: { Address: '10.200.0.77/24' } }),
    {},
  );
  // get, not list: a list reads the store's change-log cache, which may lag the agent's write.
  const portId = workloadPortId(bridgeIdOf(id), 'docker:ep1', 'eth0');
  t.deepEqual((await driver.store.get('Port', portId))?.value.ips, ['10.200.0.77']);
  const join = await call('NetworkDriver.Join', { NetworkID: id, EndpointID: 'ep1', SandboxKey: '/var/run/docker/netns/x' });
  t.is((join.InterfaceName as { DstPrefix: string }).DstPrefix, 'eth');
  t.is(join.Gateway, '10.200.0.1');
  const src = (join.InterfaceName as { SrcName: string }).SrcName;
  t.regex((await t.context.env.cluster.harness.exec(t.context.env.host.host, ['ip', 'link', 'show', src])).stdout, /mtu 1400/);
  await call('NetworkDriver.Leave', { NetworkID: id, EndpointID: 'ep1' });
  t.deepEqual(await call('NetworkDriver.DeleteNetwork', { NetworkID: id }), {}, 'refused silently while an endpoint remains');
  t.truthy(await driver.store.get('Bridge', bridgeIdOf(id)));
  await call('NetworkDriver.DeleteEndpoint', { NetworkID: id, EndpointID: 'ep1' });
  t.is(await driver.store.get('Port', portId), undefined);

  await call('IpamDriver.ReleaseAddress', { PoolID: poolAcme.PoolID, Address: a1.Address });
  await call('IpamDriver.ReleaseAddress', { PoolID: poolAcme.PoolID, Address: '10.200.0.77/24' });
  const reuse = await call('IpamDriver.RequestAddress', { PoolID: poolAcme.PoolID, Address: '10.200.0.77' });
  t.is(reuse.Address, '10.200.0.77/24', 'released addresses can be handed out again');
  await call('IpamDriver.ReleaseAddress', { PoolID: poolAcme.PoolID, Address: '10.200.0.77/24' });

  await call('NetworkDriver.DeleteNetwork', { NetworkID: id });
  await call('NetworkDriver.DeleteNetwork', { NetworkID: id });
  await call('IpamDriver.ReleaseAddress', { PoolID: p1.PoolID, Address: '10.200.0.1/24' });
  await call('IpamDriver.ReleasePool', { PoolID: p1.PoolID });
  const left = async () =>
    [
      ...(await driver.store.list('Bridge')),
      ...(await driver.store.list('Port')),
      ...(await driver.store.list('Route')),
      ...(await driver.store.list('IpamBlock')),
    ].map((x) => x.value.id);
  t.deepEqual(await eventually(async () => ((await left()).length === 0 ? [] : undefined), 5000, 'nothing left').catch(left), []);
});
