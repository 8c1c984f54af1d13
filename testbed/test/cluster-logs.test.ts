// A cluster whose agent fails to start says why and where its log is, and the log is still there to read (the
// demo's failure used to point to a log its own cleanup had deleted). Nothing else of the cluster stays.
import test from 'ava';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { startCluster } from '../cluster.js';
import { namespacesWithPrefix } from '../index.js';

test('an agent that cannot start: the error names its log, which is kept; namespaces are gone', async (t) => {
  // A flag value the agent refuses: it exits at once with a usage error in its log.
  const err = await t.throwsAsync(startCluster({ hosts: 1, agentArgs: ['--tunnel-port', 'nope'], readyTimeoutMs: 120_000 }));
  const log = /see (\S+\/agent\.log)/.exec(err?.message ?? '')?.[1];
  const kept = /logs kept in (\S+)\)/.exec(err?.message ?? '')?.[1];
  t.truthy(log, err?.message);
  t.regex(err?.message ?? '', /^agent of h1 exited with 2; see /, 'told as soon as it exited, not after the ready timeout');
  t.truthy(kept, err?.message);
  t.teardown(() => {
    if (kept) rmSync(kept, { recursive: true, force: true });
  });
  t.true(log!.startsWith(kept!), `${log} is in ${kept}`);
  t.true(existsSync(log!), `${log} is still there`);
  t.regex(readFileSync(log!, 'utf8'), /--tunnel-port must be a port number/);
  const tag = /\/(e2e[0-9a-f]{6})-/.exec(kept!)?.[1];
  t.truthy(tag, kept);
  t.deepEqual(namespacesWithPrefix(tag!), [], 'the hosts are gone');
  t.false(existsSync(join(kept!, 'run')), 'no agent left a socket directory at the top');
});
