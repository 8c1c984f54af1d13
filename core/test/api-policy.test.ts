// Chains, rules and security groups through the real REST API (TCP with a token, a real file store) and through
// the real `bees` CLI against a real `bees api` process: 4xx naming the field, nothing half-applied, OpenAPI.
import test, { type ExecutionContext } from 'ava';
import { ApiClient, ApiError } from '../api/client.js';
import type { SecurityGroup, SecurityGroupRule } from '../topology/security-groups.js';
import { bees, startBeesApi } from './bees-process.js';
import { serveApi } from './api-fixture.js';

async function serve(t: ExecutionContext) {
  const { topology, endpoint } = await serveApi(t, 'bees-api-policy-');
  return { topology, api: new ApiClient(endpoint) };
}

async function fails(t: ExecutionContext, p: Promise<unknown>, status: number, field?: string): Promise<ApiError> {
  const err = await t.throwsAsync(p, { instanceOf: ApiError });
  t.is(err.status, status, err.message);
  if (field !== undefined) t.is(err.field, field, err.message);
  return err;
}

test('security groups over REST: create, rules, attach, detach, delete; bad input is a 4xx naming the field', async (t) => {
  const { api, topology } = await serve(t);
  const b = await api.create('Bridge', { name: 'blue', subnets: [{ cidr: '10.5.0.0/24' }] });
  const port = await api.create('Port', { bridgeId: b.id, ips: ['10.5.0.2'] });
  const web = await api.request<SecurityGroup>('POST', '/v1/security-groups', { name: 'web' });
  t.is(web.name, 'web');
  const rule = await api.request<SecurityGroupRule>('POST', `/v1/security-groups/${web.id}/rules`, {
    direction: 'ingress',
    protocol: 'tcp',
    portMin: 443,
    remoteCidr: '0.0.0.0/0',
  });
  t.like(rule, { direction: 'ingress', ethertype: 'ipv4', protocol: 'tcp', portMin: 443, portMax: 443, remoteCidr: '0.0.0.0/0' });
  const before = await topology.list('Rule');
  await fails(t, api.request('POST', `/v1/security-groups/${web.id}/rules`, { direction: 'sideways' }), 400, 'direction');
  await fails(t, api.request('POST', `/v1/security-groups/${web.id}/rules`, { direction: 'ingress', colour: 'red' }), 400, 'colour');
  await fails(t, api.request('POST', `/v1/security-groups/${web.id}/rules`, { direction: 'ingress', protocol: 'tcpp' }), 400, 'protocol');
  await fails(
    t,
    api.request('POST', `/v1/security-groups/${web.id}/rules`, { direction: 'ingress', protocol: 'tcp', portMin: 9, portMax: 8 }),
    400,
    'portMax',
  );
  await fails(
    t,
    api.request('POST', `/v1/security-groups/${web.id}/rules`, { direction: 'egress', remoteGroupId: 'ghost' }),
    400,
    'remoteGroupId',
  );
  await fails(t, api.request('POST', '/v1/security-groups/ghost/rules', { direction: 'egress' }), 404);
  await fails(t, api.request('POST', `/v1/security-groups/${web.id}/attach`, { portId: 'ghost' }), 404, 'portId');
  await fails(t, api.request('POST', '/v1/security-groups', { name: 'web' }), 409, 'name');
  await fails(t, api.request('POST', '/v1/security-groups', { name: 'bad name' }), 400, 'name');
  t.deepEqual(await topology.list('Rule'), before, 'nothing half-applied');

  const attached = await api.request<SecurityGroup>('POST', `/v1/security-groups/${web.id}/attach`, { portId: port.id });
  t.deepEqual(attached.portIds, [port.id]);
  const p = await api.get('Port', port.id);
  t.truthy(p.inboundFilterId);
  t.deepEqual((await api.get('IpAddrGroup', web.ipAddrGroupId)).addresses, ['10.5.0.2']);
  await fails(t, api.request('DELETE', `/v1/security-groups/${web.id}`), 409, 'id');
  t.is((await api.request<SecurityGroup[]>('GET', '/v1/security-groups')).length, 1);
  await api.request('DELETE', `/v1/security-groups/${web.id}/rules/${rule.id}`);
  await fails(t, api.request('DELETE', `/v1/security-groups/${web.id}/rules/${rule.id}`), 404, 'ruleId');
  await api.request('POST', `/v1/security-groups/${web.id}/detach`, { portId: port.id });
  t.is((await api.get('Port', port.id)).inboundFilterId, undefined);
  await api.request('DELETE', `/v1/security-groups/${web.id}`);
  t.deepEqual(await api.request('GET', '/v1/security-groups'), []);
  t.deepEqual(await api.list('Chain'), []);

  // Plain chains and rules: the model's new fields and the jump checks answer in the API's form.
  const c1 = await api.create('Chain', { name: 'one' });
  const c2 = await api.create('Chain', { name: 'two' });
  await api.create('Rule', { chainId: c1.id, action: 'jump', jumpChainId: c2.id });
  const loop = await fails(t, api.create('Rule', { chainId: c2.id, action: 'jump', jumpChainId: c1.id }), 400, 'jumpChainId');
  t.regex(loop.message, /"two" -> "one" -> "two"/);
  await fails(t, api.create('Rule', { chainId: c1.id, action: 'jump', jumpChainId: 'ghost' }), 400, 'jumpChainId');
  await fails(t, api.create('Rule', { chainId: c1.id, action: 'drop', condition: { invNwTos: true } }), 400, 'condition.invNwTos');
  await fails(
    t,
    api.create('Rule', { chainId: c1.id, action: 'drop', condition: { fragmentPolicy: 'all' as 'any' } }),
    400,
    'condition.fragmentPolicy',
  );
  const r = await api.create('Rule', {
    chainId: c1.id,
    action: 'drop',
    condition: { conjunctionInv: true, nwSrc: '10.0.0.0/8', dlDst: '02:00:00:00:00:01', dlDstMask: 'ff:ff:ff:ff:ff:00' },
  });
  t.true(r.condition.conjunctionInv);
});

test('OpenAPI lists the security-group routes', async (t) => {
  const { api } = await serve(t);
  const doc = await api.request<{ paths: Record<string, Record<string, { operationId: string }>> }>('GET', '/openapi.json');
  t.deepEqual(Object.keys(doc.paths['/v1/security-groups'] ?? {}).sort(), ['get', 'post']);
  t.deepEqual(Object.keys(doc.paths['/v1/security-groups/{id}'] ?? {}).sort(), ['delete', 'get']);
  for (const p of [
    '/v1/security-groups/{id}/rules',
    '/v1/security-groups/{id}/rules/{ruleId}',
    '/v1/security-groups/{id}/attach',
    '/v1/security-groups/{id}/detach',
  ]) {
    t.truthy(doc.paths[p], p);
  }
});

// ------------------------------------------------------------------------------------------------ the CLI

test('bees chain, rule and sg against a real bees api', async (t) => {
  const { sock, env } = await startBeesApi(t, 'bees-cli-policy-');
  const ok = async (args: string[]) => {
    const r = await bees(args, env);
    t.is(r.code, 0, `${args.join(' ')}: ${r.err}`);
    return r.out;
  };

  await ok(['chain', 'create', 'edge']);
  await ok(['chain', 'create', 'sub']);
  await ok(['rule', 'add', 'edge', 'accept', '--return-flow']);
  await ok(['rule', 'add', 'edge', 'jump', '--jump', 'sub']);
  await ok(['rule', 'add', 'sub', 'drop', '--proto', 'tcp', '--dport', '22', '--condition', '{"invNwSrc":true}', '--src', '10.0.0.0/8']);
  const show = await ok(['chain', 'show', 'edge']);
  t.regex(show, /POS\s+ID\s+ACTION\s+MATCH/);
  t.regex(show, /1\s+\S+\s+accept\s+return-flow/);
  t.regex(show, /2\s+\S+\s+jump sub/);
  t.regex(await ok(['rule', 'ls', 'sub']), /drop\s+proto tcp src !10\.0\.0\.0\/8 dport 22/);
  const chains = JSON.parse(await ok(['chain', 'ls', '--json'])) as { name: string }[];
  t.deepEqual(
    chains.map((c) => c.name),
    ['edge', 'sub'],
  );
  const loop = await bees(['rule', 'add', 'sub', 'jump', '--jump', 'edge'], env);
  t.is(loop.code, 1);
  t.regex(loop.err, /^bees: jumpChainId: .*"sub" -> "edge" -> "sub"/);
  const badAction = await bees(['rule', 'add', 'sub', 'allow'], env);
  t.is(badAction.code, 2);
  const busy = await bees(['chain', 'rm', 'sub'], env);
  t.is(busy.code, 1);
  await ok(['chain', 'rm', 'edge']);
  await ok(['chain', 'rm', 'sub']);

  await ok(['net', 'create', 'blue', '--subnet', '10.9.0.0/24']);
  const port = JSON.parse(await ok(['port', 'ls', '--json'])) as unknown[];
  t.is(port.length, 0);
  const p = await new ApiClient(`unix:${sock}`).create('Port', {
    bridgeId: (await new ApiClient(`unix:${sock}`).list('Bridge'))[0]!.id,
    ips: ['10.9.0.5'],
  });
  await ok(['sg', 'create', 'web']);
  await ok(['sg', 'create', 'lb']);
  const ruleId = (
    await ok(['sg', 'rule', 'add', 'web', 'ingress', '--proto', 'tcp', '--port', '8080-8081', '--remote-group', 'lb'])
  ).trim();
  await ok(['sg', 'rule', 'add', 'web', 'ingress', '--proto', 'icmp', '--icmp-type', '8']);
  await ok(['sg', 'attach', 'web', p.id]);
  const sgShow = await ok(['sg', 'show', 'web']);
  t.regex(sgShow, new RegExp(`${ruleId}\\s+ingress\\s+ipv4\\s+tcp\\s+8080-8081\\s+group lb`));
  t.regex(sgShow, /ingress\s+ipv4\s+icmp\s+type 8\s+any/);
  t.regex(sgShow, new RegExp(`ports:\\s+${p.id}`));
  t.regex(await ok(['sg', 'ls']), /^NAME\s+ID\s+RULES\s+PORTS\nlb\s+\S+\s+0\s+0\nweb\s+\S+\s+2\s+1\n$/);
  const bad = await bees(['sg', 'rule', 'add', 'web', 'ingress', '--remote-cidr', '10.0.0.0/40'], env);
  t.is(bad.code, 1);
  t.regex(bad.err, /^bees: .*remoteCidr/);
  const inUse = await bees(['sg', 'rm', 'web'], env);
  t.is(inUse.code, 1);
  t.regex(inUse.err, /still has ports/);
  await ok(['sg', 'detach', 'web', p.id]);
  await ok(['sg', 'rule', 'rm', 'web', ruleId]);
  await ok(['sg', 'rm', 'web']);
  await ok(['sg', 'rm', 'lb']);
  t.deepEqual(JSON.parse(await ok(['sg', 'ls', '--json'])), []);
});
