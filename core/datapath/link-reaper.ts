// Deleting links in batches. Each link deletion waits for RCU grace periods under the rtnl lock, so twenty veths
// deleted one by one took 326 ms here where the same twenty deleted in one request took 18 ms. Deletions asked for
// in one namespace while batches are in the kernel queue up and form the next batch: its links are put in one link
// group and the group deleted with one RTM_DELLINK. A lone deletion is a plain delete.
//
// Two batches of a namespace may be in the kernel at once: part of a deletion's wait comes after the rtnl lock is
// released, so a second batch overlaps it. In a 20-way CNI DEL burst, where each DEL waited for the batch in
// flight and then for its own, that took the agent's DEL p50 from ~56 to ~47 ms (bench/README.md). More would hold
// more of libuv's pool threads (netlink/socket.ts lets two deletions wait in the kernel at once).
//
// A group deletes every link of the namespace in it, so the group number is random (never 0, the default), and
// the batch checks that the group holds exactly its own links before deleting it; otherwise (another process uses
// that number) it deletes its links one by one and leaves the others alone.
import { randomInt } from 'node:crypto';
import { deleteLink, deleteLinkGroup, KernelError, listLinks, setLink, withNetlink, type NetlinkSocket } from './netlink/index.js';

const ENODEV = 19;

interface Job {
  names: string[];
  resolve: () => void;
  reject: (e: unknown) => void;
}

/** Batches of one namespace in the kernel at once. */
const MAX_IN_FLIGHT = 2;

interface Queue {
  jobs: Job[];
  inFlight: number;
}

const queues = new Map<string, Queue>();

/** Where a batch's group number comes from (a test pins it to check that foreign links in the group survive). */
export const groupNumbers = { next: (): number => randomInt(1, 2 ** 31) };

/** Delete these links of `netns` (the agent's own when undefined); absent ones are fine. */
export function deleteLinks(netns: string | undefined, names: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const key = netns ?? '';
    const q = queues.get(key) ?? queues.set(key, { jobs: [], inFlight: 0 }).get(key)!;
    q.jobs.push({ names, resolve, reject });
    if (q.inFlight < MAX_IN_FLIGHT) {
      q.inFlight++;
      void drain(key, netns, q);
    }
  });
}

async function drain(key: string, netns: string | undefined, q: Queue): Promise<void> {
  while (q.jobs.length > 0) {
    const jobs = q.jobs.splice(0);
    try {
      await withNetlink(netns, (s) => (jobs.length === 1 ? oneByOne(s, jobs[0]!.names) : asGroup(s, jobs)));
      for (const j of jobs) j.resolve();
    } catch {
      // Each job on its own, so a failure is reported to the deletion it belongs to.
      for (const j of jobs) {
        await withNetlink(netns, (s) => oneByOne(s, j.names)).then(j.resolve, j.reject);
      }
    }
  }
  q.inFlight--;
  if (q.inFlight === 0 && queues.get(key) === q) queues.delete(key);
}

async function oneByOne(s: NetlinkSocket, names: string[]): Promise<void> {
  for (const n of names) await deleteLink(s, n);
}

async function asGroup(s: NetlinkSocket, jobs: Job[]): Promise<void> {
  const group = groupNumbers.next();
  const tagged = new Set<string>();
  for (const n of jobs.flatMap((j) => j.names)) {
    try {
      await setLink(s, n, { group });
      tagged.add(n);
    } catch (e) {
      if (!(e instanceof KernelError && e.errno === ENODEV)) throw e;
    }
  }
  if (tagged.size === 0) return;
  const members = (await listLinks(s)).filter((l) => l.group === group);
  if (members.length !== tagged.size || members.some((l) => !tagged.has(l.name))) {
    await oneByOne(s, [...tagged]);
    return;
  }
  await deleteLinkGroup(s, group);
}
