// Text mode turns fastify's JSON lines into plain ones, and leaves out its per-request lines.
import test from 'ava';
import { pinoLineAsText } from '../agent/log-text.js';

const line = (o: Record<string, unknown>) => `${JSON.stringify({ level: 30, time: 1, pid: 2, hostname: 'h', name: 'bees-agent', ...o })}\n`;

test('an operation line: its message, its fields, its request id', (t) => {
  t.is(
    pinoLineAsText(line({ reqId: 'r1', operation: 'attach', workload: 'cli:a', ifname: 'eth0', msg: 'attach started' })),
    'attach started operation=attach workload=cli:a ifname=eth0 [request r1]',
  );
});

test('a failure says its level, and its error once (in the message)', (t) => {
  t.is(
    pinoLineAsText(line({ level: 50, reqId: 'r2', operation: 'attach', ms: 3, error: 'no route', msg: 'attach failed: no route' })),
    'ERROR attach failed: no route operation=attach ms=3 [request r2]',
  );
  t.is(pinoLineAsText(line({ level: 40, msg: 'detach failed: not found' })), 'WARN detach failed: not found');
});

test("fastify's per-request lines are left out; values with spaces are quoted; a non-JSON line passes", (t) => {
  t.is(pinoLineAsText(line({ reqId: 'r3', req: { url: '/v1/attach' }, msg: 'incoming request' })), undefined);
  t.is(pinoLineAsText(line({ reqId: 'r3', res: { statusCode: 200 }, msg: 'request completed' })), undefined);
  t.is(pinoLineAsText(line({ msg: 'x', network: 'a b' })), 'x network="a b"');
  t.is(pinoLineAsText('plain words\n'), 'plain words');
});
