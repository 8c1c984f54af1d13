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
//
// A deletion is answered once the kernel has unregistered its links (their RTM_DELLINK notifications, read from a
// subscribed socket: netlink/link-departures.ts), not when the request returns: the kernel sends those under the
// rtnl lock once the links' addresses, bridge ports and FDB entries are gone, and the request then still waits
// 15–30 ms for an RCU barrier and the devices' last references before it returns. That wait was most of a serial
// CNI DEL (bench/README.md). The batch goes on in the background, by link index: a link made meanwhile under a name
// of the batch (the same port plugged again) is not its business.
import { randomInt } from 'node:crypto';
import { deleteLink, deleteLinkGroup, getLink, KernelError, listLinks, setLink, withNetlink, type NetlinkSocket } from './netlink/index.js';
import { LinkDepartures } from './netlink/link-departures.js';

const ENODEV = 19;

interface Job {
  names: string[];
  resolve: () => void;
  reject: (e: unknown) => void;
}

/** A job's links as found when its batch started: deleted by index from then on (below). */
interface Found {
  job: Job;
  indexes: number[];
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

/** Batches of `netns` whose request is still in the kernel (some may have answered their deletions already). */
export function batchesInKernel(netns: string | undefined): number {
  return queues.get(netns ?? '')?.inFlight ?? 0;
}

async function drain(key: string, netns: string | undefined, q: Queue): Promise<void> {
  while (q.jobs.length > 0) {
    const jobs = q.jobs.splice(0);
    const settled = new Set<Job>();
    const settle = (j: Job, f: () => void): void => {
      if (settled.has(j)) return;
      settled.add(j);
      f();
    };
    let departures: LinkDepartures | undefined;
    try {
      // Subscribed before the links are looked up, so a link that goes in between is seen going.
      departures = LinkDepartures.open(netns);
    } catch {
      departures = undefined; // no early answer: the jobs wait for their request, as they would anyway
    }
    let found: Found[];
    try {
      found = await withNetlink(netns, (s) => lookUp(s, jobs));
    } catch (e) {
      departures?.close();
      for (const j of jobs) j.reject(e);
      continue;
    }
    const watch = departures && watchDepartures(departures, found, (j) => settle(j, j.resolve));
    try {
      await withNetlink(netns, (s) => (found.length === 1 ? oneByOne(s, found[0]!.indexes) : asGroup(s, found)));
      for (const j of jobs) settle(j, j.resolve);
    } catch {
      // Each job on its own, so a failure is reported to the deletion it belongs to.
      for (const f of found) {
        await withNetlink(netns, (s) => oneByOne(s, f.indexes)).then(
          () => settle(f.job, f.job.resolve),
          (e: unknown) => settle(f.job, () => f.job.reject(e)),
        );
      }
    } finally {
      watch?.stop();
    }
  }
  q.inFlight--;
  if (q.inFlight === 0 && queues.get(key) === q) queues.delete(key);
}

/**
 * The index of each named link; a name without a link has nothing to delete. From here on the batch deletes by
 * index: its jobs may be answered before its request returns (below), and a link made afterwards under one of
 * their names (a new plug of the same port) must not be taken by the rest of this batch.
 */
async function lookUp(s: NetlinkSocket, jobs: Job[]): Promise<Found[]> {
  const found: Found[] = [];
  for (const job of jobs) {
    const indexes: number[] = [];
    for (const n of job.names) {
      const link = await getLink(s, n);
      if (link) indexes.push(link.index);
    }
    found.push({ job, indexes });
  }
  return found;
}

/** How often the link notifications are read while a batch is in the kernel (ms). */
const POLL_MS = 1;

/**
 * Resolve each job as soon as the kernel has unregistered its links (their RTM_DELLINK notifications), not when the
 * request returns from its wait for the devices' memory to be freed, 15–30 ms later (netlink/link-departures.ts).
 * Should notifications be lost, the jobs wait for their request.
 */
function watchDepartures(departures: LinkDepartures, found: Found[], done: (j: Job) => void): { stop: () => void } {
  let waiting = found;
  let timer: NodeJS.Timeout | undefined;
  const stop = (): void => {
    clearTimeout(timer);
    departures.close();
  };
  const check = (): void => {
    let gone: Set<number>;
    try {
      gone = departures.poll();
    } catch {
      return stop();
    }
    if (departures.overrun) return stop();
    waiting = waiting.filter((w) => {
      if (!w.indexes.every((i) => gone.has(i))) return true;
      done(w.job);
      return false;
    });
    if (waiting.length === 0) stop();
    else timer = setTimeout(check, POLL_MS);
  };
  // A job whose links were all absent is done at once.
  check();
  return { stop };
}

async function oneByOne(s: NetlinkSocket, indexes: number[]): Promise<void> {
  for (const i of indexes) await deleteLink(s, i);
}

async function asGroup(s: NetlinkSocket, found: Found[]): Promise<void> {
  const group = groupNumbers.next();
  const tagged = new Set<number>();
  for (const i of found.flatMap((f) => f.indexes)) {
    try {
      await setLink(s, i, { group });
      tagged.add(i);
    } catch (e) {
      if (!(e instanceof KernelError && e.errno === ENODEV)) throw e;
    }
  }
  if (tagged.size === 0) return;
  const members = (await listLinks(s)).filter((l) => l.group === group);
  if (members.length !== tagged.size || members.some((l) => !tagged.has(l.index))) {
    await oneByOne(s, [...tagged]);
    return;
  }
  await deleteLinkGroup(s, group);
}
