// Host port publishing on a real kernel: a namespace stands for the host, another for the workload behind a
// veth. Published ports reach the workload (TCP, through DNAT), a taken host port is refused with nothing
// changed, and unpublishing the last port leaves no table behind.
import test from 'ava';
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { PortMapError, publishedPorts, publishPorts, unpublishPorts } from '../datapath/nft/index.js';

const exec = promisify(execFile);
const sh = (cmd: string) => exec('sh', ['-c', cmd]);

test('publish, conflict, replace and unpublish host ports', async (t) => {
  const tag = randomBytes(3).toString('hex');
  const host = `pmh-${tag}`;
  const wl = `pmw-${tag}`;
  t.teardown(async () => {
    await sh(`ip netns del ${host}; ip netns del ${wl}`).catch(() => undefined);
  });
  await sh(`ip netns add ${host} && ip netns add ${wl} && ip -n ${host} link set lo up && ip -n ${wl} link set lo up`);
  await sh(`ip -n ${host} link add h0 type veth peer name w0 netns ${wl}`);
  await sh(
    `ip -n ${host} addr add 10.66.0.1/24 dev h0 && ip -n ${host} link set h0 up && ip -n ${wl} addr add 10.66.0.2/24 dev w0 && ip -n ${wl} link set w0 up && ip -n ${wl} route add default via 10.66.0.1`,
  );
  await sh(`ip -n ${host} addr add 192.0.2.10/32 dev lo`);
  const netns = `/run/netns/${host}`;
  const server = spawn('ip', ['netns', 'exec', wl, 'busybox', 'nc', '-ll', '-p', '8000', '-e', 'busybox', 'echo', 'hello']);
  t.teardown(() => {
    server.kill();
  });
  // Wait for the listener instead of guessing how long its start takes on a busy machine (a minute: a hang guard).
  for (const end = Date.now() + 60_000; ; await new Promise((r) => setTimeout(r, 50))) {
    if ((await sh(`ip netns exec ${wl} ss -Hltn 'sport = :8000'`)).stdout.trim() !== '') break;
    if (Date.now() > end) throw new Error('the workload server never listened on :8000');
  }

  await publishPorts(netns, 'port-a', [{ protocol: 'tcp', hostPort: 18080, ip: '10.66.0.2', port: 8000 }]);
  t.deepEqual(await publishedPorts(netns, 'port-a'), ['tcp . 18080']);
  // From the host itself (output hook), to any of its addresses.
  const { stdout } = await sh(`ip netns exec ${host} nc -w 2 192.0.2.10 18080 </dev/null`);
  t.is(stdout.trim(), 'hello');

  const err = await publishPorts(netns, 'port-b', [{ protocol: 'tcp', hostPort: 18080, ip: '10.66.0.3', port: 80 }]).catch(
    (e: unknown) => e,
  );
  t.true(err instanceof PortMapError && err.kind === 'conflict', String(err));
  t.deepEqual(await publishedPorts(netns, 'port-b'), []);
  const bad = await publishPorts(netns, 'port-b', [{ protocol: 'icmp' as 'tcp', hostPort: 1, ip: '10.66.0.3', port: 80 }]).catch(
    (e: unknown) => e,
  );
  t.true(bad instanceof PortMapError && bad.kind === 'invalid');

  // Re-publishing replaces the owner's set; a host address narrows the match.
  await publishPorts(netns, 'port-a', [{ protocol: 'udp', hostPort: 5353, ip: '10.66.0.2', port: 53, hostIP: '192.0.2.10' }]);
  t.deepEqual(await publishedPorts(netns, 'port-a'), ['192.0.2.10 . udp . 5353']);
  await publishPorts(netns, 'port-b', [{ protocol: 'tcp', hostPort: 18080, ip: '10.66.0.2', port: 8000 }]);
  await unpublishPorts(netns, 'port-a');
  t.regex((await sh(`ip netns exec ${host} /usr/sbin/nft list tables`)).stdout, /bees-portmap/, 'port-b still holds one');
  await unpublishPorts(netns, 'port-b');
  await unpublishPorts(netns, 'port-b');
  t.notRegex((await sh(`ip netns exec ${host} /usr/sbin/nft list tables`)).stdout, /bees-portmap/);
});
