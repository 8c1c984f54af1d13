// `bees demo` end to end through the real CLI: it builds the overlay, every check comes out as expected, the JSON
// report says so, and nothing of it is left on the machine afterwards.
import test from 'ava';
import { execFile } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { DemoReport } from '../demo.js';

const run = promisify(execFile);
const MAIN = fileURLToPath(new URL('../../main.ts', import.meta.url));
const namespaces = () => readdirSync('/run/netns');

test('bees demo --json: cross-host ping, throughput and isolation as expected, then nothing left', async (t) => {
  const { stdout, stderr } = await run(process.execPath, ['--import', 'tsx', MAIN, 'demo', '--json', '--seconds', '1'], {
    env: { ...process.env, NODE_OPTIONS: '' },
    maxBuffer: 1 << 24,
    timeout: 240_000,
  });
  const report = JSON.parse(stdout) as DemoReport;
  t.true(report.ok, stderr);
  t.is(report.hosts.length, 3);
  t.is(report.tenants[0]!.subnet, report.tenants[1]!.subnet);
  const kinds = report.checks.map((c) => c.check);
  t.true(kinds.filter((k) => k.startsWith('ping')).length >= 4);
  t.true(kinds.includes('throughput over the overlay'));
  t.true(kinds.filter((k) => k.startsWith('isolation')).length >= 4);
  t.true(report.checks.filter((c) => c.check.startsWith('isolation')).every((c) => c.result === 'no reply'));
  t.regex(stderr, /bees: demo: cleaning up/);
  t.is(new Set(report.hosts.map((h) => h.hostId)).size, 3);
  t.regex(report.tag, /^e2e[0-9a-f]{6}$/);
  t.deepEqual(
    [...namespaces()].filter((n) => n.startsWith(report.tag)),
    [],
    'every namespace of the demo is gone',
  );
  const links = await run('ip', ['-br', 'link', 'show']);
  t.false(links.stdout.includes(report.tag), 'its root-namespace link is gone');
});

test('bees demo refuses a bad --seconds with a usage error', async (t) => {
  const e = await run(process.execPath, ['--import', 'tsx', MAIN, 'demo', '--seconds', 'x'], {
    env: { ...process.env, NODE_OPTIONS: '' },
  }).then(
    () => undefined,
    (err: { code: number; stderr: string }) => err,
  );
  t.is(e?.code, 2);
  t.regex(e?.stderr ?? '', /--seconds must be a whole number/);
});
