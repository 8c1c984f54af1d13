// `bees port set PORT --admin-state up|down` against a real `bees api` on the file store: the stored state, the
// ADMIN column of `bees port ls`, --json, and bad input refused (exit 2 for usage, 1 for what the API refuses; the
// REST API answers 400 naming the field).
import test from 'ava';
import { ApiClient } from '../api/client.js';
import { bees, startBeesApi } from './bees-process.js';

test('bees port set --admin-state: stored, shown in port ls, bad input refused', async (t) => {
  const { sock, env } = await startBeesApi(t, 'bees-cli-port-');
  const api = new ApiClient(`unix:${sock}`);
  const net = await api.create('Bridge', { name: 'blue', subnets: [{ cidr: '10.81.0.0/24' }] });
  const port = await api.create('Port', { bridgeId: net.id, ips: ['10.81.0.5'] });
  const ok = async (args: string[]) => {
    const r = await bees(args, env);
    t.is(r.code, 0, `${args.join(' ')}: ${r.err}`);
    return r.out;
  };

  t.is(await ok(['port', 'set', port.id, '--admin-state', 'down']), `${port.id} admin state down\n`);
  t.false((await api.get('Port', port.id)).adminStateUp);
  t.regex(await ok(['port', 'ls']), new RegExp(`^ID\\s+TYPE.*STATUS\\s+ADMIN\\s+OWNER\\n${port.id}\\s+bridge\\s+blue.*\\s+down\\s+-\\n$`));
  const json = JSON.parse(await ok(['port', 'set', port.id, '--admin-state', 'up', '--json'])) as { id: string; adminStateUp: boolean };
  t.like(json, { id: port.id, adminStateUp: true });
  t.true((await api.get('Port', port.id)).adminStateUp);

  const bad = await bees(['port', 'set', port.id, '--admin-state', 'off'], env);
  t.is(bad.code, 2);
  t.regex(bad.err, /--admin-state must be up or down, not 'off'/);
  const nothing = await bees(['port', 'set', port.id], env);
  t.is(nothing.code, 2);
  t.regex(nothing.err, /nothing to change/);
  const missing = await bees(['port', 'set', 'no-such-port', '--admin-state', 'down'], env);
  t.is(missing.code, 1);
  t.regex(missing.err, /no-such-port/);
  // The REST API itself: a non-boolean is a 400 naming the field, and nothing changes.
  const err = await api.update('Port', port.id, { adminStateUp: 'no' }).then(
    () => undefined,
    (e: Error & { status?: number }) => e,
  );
  t.is(err?.status, 400);
  t.regex(err?.message ?? '', /adminStateUp/);
  t.true((await api.get('Port', port.id)).adminStateUp);
});
