// A minimal nfnetlink client for nf_tables (linux/netfilter/nfnetlink.h, nf_tables.h): a batch of messages sent
// as one kernel transaction, and a dump. For the few operations where libnftables costs more than the kernel work
// (its cache fill dumps set contents first; see policy-elements.ts and script.ts ensureBaseChains).
import { parseAttrs } from '../netlink/attributes.js';
import { KernelError, lastErrno, libc } from '../netlink/libc.js';
import { inNamespace } from '../netlink/netns.js';
import { ownCommit, ownCommitWanted } from './own-commits.js';
import type { Family } from './tables.js';
import {
  AF_NETLINK,
  SOCK_RAW,
  SOCK_CLOEXEC,
  SOL_SOCKET,
  SO_RCVTIMEO,
  SOL_NETLINK,
  NETLINK_CAP_ACK,
  NETLINK_EXT_ACK,
  MSG_DONTWAIT,
  NLMSG_HDRLEN,
} from '../netlink/sys.js';

const NETLINK_NETFILTER = 12;
const SO_SNDBUFFORCE = 32;
const SO_RCVBUFFORCE = 33;
/** The socket buffers' default size (net.core.wmem_default / rmem_default): a bigger batch needs them raised. */
const DEFAULT_SOCKET_BUFFER = 212_992;

const NLM_F_REQUEST = 0x1;
const NLM_F_ACK = 0x4;
const NLM_F_CREATE = 0x400;
const NLMSG_ERROR = 2;
const NLA_F_NESTED = 0x8000;

const NFNL_SUBSYS_NFTABLES = 10;
const NFNL_MSG_BATCH_BEGIN = 16;
const NFNL_MSG_BATCH_END = 17;
const NLM_F_ECHO = 0x8;
const NLM_F_DUMP = 0x300;
const NLMSG_DONE = 3;
const NFT_MSG_NEWCHAIN = 3;
const NFT_MSG_GETCHAIN = 4;
const NFTA_CHAIN_TABLE = 1;
const NFTA_CHAIN_HANDLE = 2;
const NFTA_CHAIN_NAME = 3;
const NFTA_CHAIN_POLICY = 5;
const NFT_MSG_NEWRULE = 6;
const NFT_MSG_GETRULE = 7;
const NFTA_RULE_TABLE = 1;
const NFTA_RULE_CHAIN = 2;
const NFTA_RULE_HANDLE = 3;
const NFTA_RULE_USERDATA = 7;
/** libnftnl's rule userdata: TLVs of (u8 type, u8 length, value); a comment is type 0, NUL-terminated. */
const NFTNL_UDATA_RULE_COMMENT = 0;
const NFT_MSG_NEWGEN = 15;
const NFT_MSG_GETGEN = 16;
const NFTA_GEN_ID = 1;

export const NFPROTO: Readonly<Record<Family, number>> = { inet: 1, ip: 2, bridge: 7, ip6: 10 };
export { NLM_F_ACK, NLM_F_CREATE, NLM_F_ECHO, NLA_F_NESTED, NFNL_SUBSYS_NFTABLES };

let seqCounter = Math.floor(Math.random() * 0x3fffffff);

export function message(type: number, flags: number, seq: number, family: number, resId: number, attrs: Buffer[]): Buffer {
  const body = Buffer.concat(attrs);
  const m = Buffer.alloc(NLMSG_HDRLEN + 4 + body.length);
  m.writeUInt32LE(m.length, 0);
  m.writeUInt16LE(type, 4);
  m.writeUInt16LE(flags | NLM_F_REQUEST, 6);
  m.writeUInt32LE(seq, 8);
  m[NLMSG_HDRLEN] = family;
  m[NLMSG_HDRLEN + 1] = 0; // NFNETLINK_V0
  m.writeUInt16BE(resId, NLMSG_HDRLEN + 2);
  body.copy(m, NLMSG_HDRLEN + 4);
  return m;
}

/** A request for a batch: `type` is the nf_tables message type (NFT_MSG_*), acknowledged. */
export interface BatchMessage {
  type: number;
  flags: number;
  family: number;
  attrs: Buffer[];
}

/** nf_tables transactions sent by nftBatch (read before and after, as nftTransactionCounter for libnftables). */
export const nftBatchCounter = { count: 0 };

/**
 * An nf_tables batch written message by message into one growing buffer: a bulk write adds each rule as it is
 * encoded, so the rule's buffers and message die young (10,000 of them kept until the batch was framed cost more
 * in the garbage collector's copies than their encoding). `flags` go on the batch begin and on each message added
 * with `flagged`; only the last message asks for an acknowledgement (the kernel reports a failing message whatever
 * its flags, in batch order, before that acknowledgement; an acknowledgement per message cost as much CPU as the
 * kernel's work on a 50-rule chain, 0.3 ms of 0.6 measured here). Message i has sequence number first + 1 + i.
 */
export class BatchWriter {
  private buf: Buffer;
  private o = 0;
  private lastAt = -1;
  /** Messages added so far. */
  count = 0;
  readonly first: number;

  constructor(
    private readonly flags: number,
    sizeHint = 4096,
  ) {
    this.buf = Buffer.allocUnsafe(Math.max(sizeHint, 64));
    this.first = (seqCounter + 1) & 0x3fffffff;
    this.put(NFNL_MSG_BATCH_BEGIN, flags, this.first, 0, NFNL_SUBSYS_NFTABLES, []);
  }

  /** Append `m`; returns its index. */
  add(m: BatchMessage, flagged = true): number {
    this.lastAt = this.o;
    this.put(
      (NFNL_SUBSYS_NFTABLES << 8) | m.type,
      (m.flags | (flagged ? this.flags : 0)) & ~NLM_F_ACK,
      this.first + 1 + this.count,
      m.family,
      0,
      m.attrs,
    );
    return this.count++;
  }

  /** The framed batch (the writer is done with). */
  finish(): { batch: Buffer; first: number; count: number } {
    if (this.lastAt >= 0) this.buf.writeUInt16LE(this.buf.readUInt16LE(this.lastAt + 6) | NLM_F_ACK, this.lastAt + 6);
    const seq = this.first + 1 + this.count;
    this.put(NFNL_MSG_BATCH_END, 0, seq, 0, NFNL_SUBSYS_NFTABLES, []);
    seqCounter = seq & 0x3fffffff;
    return { batch: this.buf.subarray(0, this.o), first: this.first, count: this.count };
  }

  private put(type: number, f: number, seq: number, family: number, resId: number, attrs: readonly Buffer[]): void {
    const HEAD = NLMSG_HDRLEN + 4;
    let len = HEAD;
    for (const a of attrs) len += a.length;
    if (this.o + len > this.buf.length) {
      const grown = Buffer.allocUnsafe(Math.max(2 * this.buf.length, this.o + len));
      this.buf.copy(grown, 0, 0, this.o);
      this.buf = grown;
    }
    const b = this.buf;
    const start = this.o;
    let o = start + HEAD;
    for (const a of attrs) o += a.copy(b, o);
    b.writeUInt32LE(len, start);
    b.writeUInt16LE(type, start + 4);
    b.writeUInt16LE(f | NLM_F_REQUEST, start + 6);
    b.writeUInt32LE(seq, start + 8);
    b.writeUInt32LE(0, start + 12); // port id: the kernel's
    b[start + NLMSG_HDRLEN] = family;
    b[start + NLMSG_HDRLEN + 1] = 0; // NFNETLINK_V0
    b.writeUInt16BE(resId, start + NLMSG_HDRLEN + 2);
    this.o = o;
  }
}

/**
 * `messages` framed as one nf_tables batch, `flags` added to the batch begin and every message (or those whose index
 * is in `only`); `first` is the sequence number of the batch begin (message i is first + 1 + i).
 */
function batchBuffer(messages: readonly BatchMessage[], flags: number, only?: ReadonlySet<number>): { batch: Buffer; first: number } {
  // Sized first: a 10,000-rule chain's batch built message by message (a buffer each, then all concatenated) cost
  // as much as its encoding.
  let size = 2 * (NLMSG_HDRLEN + 4);
  for (const m of messages) {
    size += NLMSG_HDRLEN + 4;
    for (const a of m.attrs) size += a.length;
  }
  const w = new BatchWriter(flags, size);
  for (let i = 0; i < messages.length; i++) w.add(messages[i]!, !only || only.has(i));
  return w.finish();
}

/**
 * Send `messages` as one nf_tables transaction (all or nothing); rejects with the kernel's first error. When
 * something keeps state by generation in the namespace (own-commits.ts), the commit's generation is echoed (its
 * first message asks for an echo, which is what makes the kernel echo it) and reported with the chains the batch
 * names.
 */
export async function nftBatch(
  netns: string | undefined,
  messages: readonly BatchMessage[],
  context: string,
  via?: SharedSocket,
): Promise<void> {
  if (messages.length === 0) return;
  if (ownCommitWanted(netns)) {
    const echo = await nftBatchEcho(netns, messages, context, new Set([0]), via);
    ownCommit(netns, echo.generation, batchTouches(messages));
    return;
  }
  nftBatchCounter.count++;
  await exchange(netns, batchBuffer(messages, 0).batch, 1, context, undefined, via);
}

const NFT_MSG_DELTABLE = 2;
const NFT_MSG_DELCHAIN = 5;
const NFT_MSG_DELRULE = 8;
const NFTA_ATTR_TYPE_MASK = 0x3fff;

/** Which chains a batch may change: those its chain and rule messages name; all when it deletes a table. */
export function batchTouches(messages: readonly BatchMessage[]): (chain: string) => boolean {
  const names = new Set<string>();
  for (const m of messages) {
    if (m.type === NFT_MSG_DELTABLE) return () => true;
    const attr =
      m.type === NFT_MSG_NEWRULE || m.type === NFT_MSG_DELRULE
        ? NFTA_RULE_CHAIN
        : m.type === NFT_MSG_NEWCHAIN || m.type === NFT_MSG_DELCHAIN
          ? NFTA_CHAIN_NAME
          : undefined;
    if (attr === undefined) continue;
    const a = m.attrs.find((b) => (b.readUInt16LE(2) & NFTA_ATTR_TYPE_MASK) === attr);
    // A chain named by handle only (no name attribute): it could be any.
    if (!a) return () => true;
    const len = a.readUInt16LE(0);
    names.add(a.subarray(4, len).toString().replace(/\0+$/, ''));
  }
  return (chain) => names.has(chain);
}

/** What the kernel echoed of a batch sent by nftBatchEcho. */
export interface BatchEcho {
  /** The ruleset generation our commit made (NFT_MSG_NEWGEN, echoed because the batch asks for it). */
  generation: number;
  /** For each message index that created a rule: the rule's handle. */
  handles: Map<number, bigint>;
}

/**
 * nftBatch, every message with NLM_F_ECHO: the kernel sends back what the commit made, the handle of each new rule
 * and the generation id of this very commit, so a later reader can tell whether anything was committed since
 * (generation()). The generation came back only when the batch's messages asked for an echo (kernel 6.18: a
 * batch of rule deletions with NLM_F_ECHO on its begin message alone got none), hence on all of them, or on those
 * in `only` (each echo is a notification the kernel builds: echoing 10,000 new rules cost it ~30 ms more).
 */
export async function nftBatchEcho(
  netns: string | undefined,
  messages: readonly BatchMessage[],
  context: string,
  only?: ReadonlySet<number>,
  via?: SharedSocket,
): Promise<BatchEcho> {
  return sendEcho(netns, batchBuffer(messages, NLM_F_ECHO, only), messages.length, context, via);
}

/** nftBatchEcho of a batch written by a BatchWriter made with NLM_F_ECHO (the writer is finished here). */
export function nftBatchEchoWritten(netns: string | undefined, w: BatchWriter, context: string, via?: SharedSocket): Promise<BatchEcho> {
  const { batch, first, count } = w.finish();
  return sendEcho(netns, { batch, first }, count, context, via);
}

async function sendEcho(
  netns: string | undefined,
  { batch, first }: { batch: Buffer; first: number },
  count: number,
  context: string,
  via: SharedSocket | undefined,
): Promise<BatchEcho> {
  nftBatchCounter.count++;
  const echo: BatchEcho = { generation: -1, handles: new Map() };
  await exchange(
    netns,
    batch,
    count ? 1 : 0,
    context,
    (type, s, attrs) => {
      if (type === ((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN)) echo.generation = attrs().get(NFTA_GEN_ID)?.readUInt32BE(0) ?? -1;
      else if (type === ((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWRULE)) {
        const h = attrs().get(NFTA_RULE_HANDLE);
        if (h) echo.handles.set(s - first - 1, h.readBigUInt64BE(0));
      }
    },
    via,
  );
  return echo;
}

/** The current ruleset generation id of the namespace (NFT_MSG_GETGEN): every commit by anyone changes it. */
export function generation(netns: string | undefined, via?: SharedSocket): number {
  const attrs = getOne(netns, NFT_MSG_GETGEN, NFT_MSG_NEWGEN, 0, [], 'get the nftables generation', via);
  return attrs?.get(NFTA_GEN_ID)?.readUInt32BE(0) ?? -1;
}

/**
 * One nfnetlink socket for the requests of one operation (a generation check, a dump, chain gets and the batch),
 * closed once at its end, off the event loop (closeShared). Closing an nfnetlink socket waits in the kernel
 * (nft_rcv_nl_event, under the commit mutex) for the destruction of the namespace's past transactions, an RCU grace
 * period after a recent commit (~10 ms here): with a socket per request, the first request after a commit (the
 * generation check of a chain load) paid it on the event loop, before the batch.
 */
export interface SharedSocket {
  readonly fd: number;
}

/** A socket for several requests in `netns`; hand it to them and closeShared it at the end. */
export function openShared(netns: string | undefined, context: string): SharedSocket {
  return { fd: openSocket(netns, context) };
}

/**
 * The socket of a request: `via`'s, with whatever an earlier request left unread dropped first (an aborted batch
 * need not deliver every reply), or a new one.
 */
function socketFor(netns: string | undefined, context: string, via: SharedSocket | undefined): number {
  if (!via) return openSocket(netns, context);
  const c = libc();
  const scrap = Buffer.allocUnsafe(64 * 1024);
  while (c.recv(via.fd, scrap, scrap.length, MSG_DONTWAIT) > 0);
  return via.fd;
}

/** Close a shared socket on a pool thread, not waited for (see SharedSocket). */
export function closeShared(s: SharedSocket): void {
  void libc()
    .closeAsync(s.fd)
    .catch(() => undefined);
}

function openSocket(netns: string | undefined, context: string): number {
  const c = libc();
  const fd = inNamespace(netns, () => c.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER));
  if (fd < 0) throw new KernelError(`${context}: nfnetlink socket`, lastErrno());
  const one = Buffer.alloc(4);
  one.writeInt32LE(1);
  c.setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, one, 4);
  c.setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, one, 4);
  const tv = Buffer.alloc(16);
  tv.writeBigInt64LE(5n, 0);
  c.setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, tv, 16);
  return fd;
}

const kernelAddr = (): Buffer => {
  const addr = Buffer.alloc(12);
  addr.writeUInt16LE(AF_NETLINK, 0);
  return addr;
};

/** The attributes of every rule of chain `chain` of table `family table`, by one rule dump filtered in the kernel. */
function dumpChainRules(
  netns: string | undefined,
  family: Family,
  table: string,
  chain: string,
  keep?: readonly number[],
  via?: SharedSocket,
): Map<number, Buffer>[] {
  const context = `list rules of ${family} ${table} ${chain}`;
  const c = libc();
  const fd = socketFor(netns, context, via);
  try {
    const req = message((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETRULE, NLM_F_DUMP, ++seqCounter, NFPROTO[family], 0, [
      strz(NFTA_RULE_TABLE, table),
      strz(NFTA_RULE_CHAIN, chain),
    ]);
    if (c.sendto(fd, req, req.length, 0, kernelAddr(), 12) < 0) throw new KernelError(`${context}: nfnetlink send`, lastErrno());
    const out: Map<number, Buffer>[] = [];
    const buf = Buffer.alloc(256 * 1024);
    for (;;) {
      const n = c.recv(fd, buf, buf.length, 0);
      if (n < 0) throw new KernelError(`${context}: nfnetlink receive`, lastErrno());
      for (let off = 0; off + NLMSG_HDRLEN <= n;) {
        const len = buf.readUInt32LE(off);
        if (len < NLMSG_HDRLEN) return out;
        const type = buf.readUInt16LE(off + 4);
        if (type === NLMSG_DONE) return out;
        if (type === NLMSG_ERROR) {
          const errno = -buf.readInt32LE(off + NLMSG_HDRLEN);
          if (errno === 2) return out; // ENOENT: no such table or chain
          throw new KernelError(context, errno);
        }
        if (type === ((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWRULE)) {
          // Copied: the receive buffer is reused by the next read. Only the attributes asked for (`keep`): copying
          // every rule's expressions made a 10,000-rule dump cost ~80 ms.
          const attrs = parseAttrs(buf, off + NLMSG_HDRLEN + 4, off + len);
          out.push(new Map([...attrs].flatMap(([k, v]) => (keep && !keep.includes(k) ? [] : [[k, Buffer.from(v)] as const]))));
        }
        off += (len + 3) & ~3;
      }
    }
  } finally {
    if (!via) c.close(fd);
  }
}

/**
 * The comments of the rules of chain `chain` of table `family table` (a rule without one gives ''), read by one
 * rule dump filtered in the kernel: no set element is read. [] when the chain or table does not exist.
 */
export function chainRuleComments(netns: string | undefined, family: Family, table: string, chain: string): string[] {
  return dumpChainRules(netns, family, table, chain).map((a) => {
    const ud = a.get(NFTA_RULE_USERDATA);
    return ud ? ruleComment(ud) : '';
  });
}

/** The handle and comment of each rule of a chain, in order ([] when the chain or table does not exist). */
export function chainRuleHandles(
  netns: string | undefined,
  family: Family,
  table: string,
  chain: string,
  via?: SharedSocket,
): { handle: bigint; comment: string }[] {
  return dumpChainRules(netns, family, table, chain, [NFTA_RULE_HANDLE, NFTA_RULE_USERDATA], via).map((a) => {
    const ud = a.get(NFTA_RULE_USERDATA);
    return { handle: a.get(NFTA_RULE_HANDLE)?.readBigUInt64BE(0) ?? 0n, comment: ud ? ruleComment(ud) : '' };
  });
}

/**
 * What identifies the state of a chain: its handle and policy, and the handles of its rules in order (every change
 * of a rule by any tool gives it a new handle). undefined when the chain or its table does not exist.
 */
export function chainFingerprint(netns: string | undefined, family: Family, table: string, chain: string): string | undefined {
  const attrs = getChain(netns, family, table, chain);
  if (!attrs) return undefined;
  const handle = attrs.get(NFTA_CHAIN_HANDLE)?.readBigUInt64BE(0) ?? 0n;
  const policy = attrs.get(NFTA_CHAIN_POLICY)?.readUInt32BE(0) ?? -1;
  const rules = dumpChainRules(netns, family, table, chain).map((a) => a.get(NFTA_RULE_HANDLE)?.readBigUInt64BE(0) ?? 0n);
  return `${handle}/${policy}/${rules.join(',')}`;
}

/**
 * Whether chain `chain` of table `family table` exists, by one kernel get of that chain alone (no dump, no
 * libnftables cache): false when it or its table does not exist.
 */
export function chainExists(netns: string | undefined, family: Family, table: string, chain: string, via?: SharedSocket): boolean {
  return getChain(netns, family, table, chain, via) !== undefined;
}

/** The chain's attributes, by one kernel get of that chain alone; undefined when it or its table does not exist. */
function getChain(
  netns: string | undefined,
  family: Family,
  table: string,
  chain: string,
  via?: SharedSocket,
): Map<number, Buffer> | undefined {
  return getOne(
    netns,
    NFT_MSG_GETCHAIN,
    NFT_MSG_NEWCHAIN,
    NFPROTO[family],
    [strz(NFTA_CHAIN_TABLE, table), strz(NFTA_CHAIN_NAME, chain)],
    `get chain ${family} ${table} ${chain}`,
    via,
  );
}

/** One get request (not a dump) and the attributes of its `reply` message; undefined on ENOENT. */
function getOne(
  netns: string | undefined,
  type: number,
  reply: number,
  family: number,
  attrs: Buffer[],
  context: string,
  via?: SharedSocket,
): Map<number, Buffer> | undefined {
  const c = libc();
  const fd = socketFor(netns, context, via);
  try {
    const seq = (seqCounter = (seqCounter + 1) & 0x3fffffff);
    const req = message((NFNL_SUBSYS_NFTABLES << 8) | type, 0, seq, family, 0, attrs);
    if (c.sendto(fd, req, req.length, 0, kernelAddr(), 12) < 0) throw new KernelError(`${context}: nfnetlink send`, lastErrno());
    const buf = Buffer.alloc(64 * 1024);
    for (;;) {
      const n = c.recv(fd, buf, buf.length, 0);
      if (n < 0) throw new KernelError(`${context}: nfnetlink receive`, lastErrno());
      for (let off = 0; off + NLMSG_HDRLEN <= n;) {
        const len = buf.readUInt32LE(off);
        if (len < NLMSG_HDRLEN) break;
        const got = buf.readUInt16LE(off + 4);
        if (buf.readUInt32LE(off + 8) === seq) {
          if (got === ((NFNL_SUBSYS_NFTABLES << 8) | reply))
            return new Map([...parseAttrs(buf, off + NLMSG_HDRLEN + 4, off + len)].map(([k, v]) => [k, Buffer.from(v)]));
          if (got === NLMSG_ERROR) {
            const errno = -buf.readInt32LE(off + NLMSG_HDRLEN);
            if (errno === 2) return undefined; // ENOENT: no such table or chain
            throw new KernelError(context, errno);
          }
        }
        off += (len + 3) & ~3;
      }
    }
  } finally {
    if (!via) c.close(fd);
  }
}

function ruleComment(ud: Buffer): string {
  for (let i = 0; i + 2 <= ud.length; i += 2 + ud[i + 1]!) {
    if (ud[i] === NFTNL_UDATA_RULE_COMMENT) {
      const v = ud.subarray(i + 2, i + 2 + ud[i + 1]!);
      const nul = v.indexOf(0);
      return v.subarray(0, nul < 0 ? v.length : nul).toString();
    }
  }
  return '';
}

/** A NUL-terminated string attribute. */
function strz(type: number, s: string): Buffer {
  const payload = Buffer.from(`${s}\0`);
  const len = 4 + payload.length;
  const b = Buffer.alloc((len + 3) & ~3);
  b.writeUInt16LE(len, 0);
  b.writeUInt16LE(type, 2);
  payload.copy(b, 4);
  return b;
}

/** Send a batch and read `acks` acknowledgements; the first error rejects (the kernel applied nothing). */
async function exchange(
  netns: string | undefined,
  batch: Buffer,
  acks: number,
  context: string,
  onMessage?: (type: number, seq: number, attrs: () => Map<number, Buffer>) => void,
  via?: SharedSocket,
): Promise<void> {
  const c = libc();
  const fd = socketFor(netns, context, via);
  try {
    // netlink refuses a message longer than the send buffer (EMSGSIZE) and a batch must be one message: a
    // 10,000-rule chain is ~3 MB. We are root (CAP_NET_ADMIN), so the FORCE options may pass net.core.wmem_max.
    // The receive buffer grows alike, for the echoes of a big batch.
    if (batch.length > DEFAULT_SOCKET_BUFFER / 2) {
      const size = Buffer.alloc(4);
      size.writeInt32LE(Math.min(batch.length + 65536, 0x3fffffff));
      if (c.setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, size, 4) < 0)
        throw new KernelError(`${context}: nfnetlink send buffer`, lastErrno());
      c.setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, size, 4);
    }
    const addr = kernelAddr();
    // The commit runs inside sendto: on a pool thread, so the event loop goes on meanwhile.
    const sent = await c.sendtoAsync(fd, batch, batch.length, 0, addr, 12);
    if (sent < 0) throw new KernelError(`${context}: nfnetlink send`, lastErrno());
    const buf = Buffer.alloc(64 * 1024);
    let got = 0;
    let failure: KernelError | undefined;
    while (got < acks) {
      const n = c.recv(fd, buf, buf.length, 0);
      if (n < 0) throw new KernelError(`${context}: nfnetlink receive`, lastErrno());
      for (let off = 0; off + NLMSG_HDRLEN <= n;) {
        const len = buf.readUInt32LE(off);
        if (len < NLMSG_HDRLEN) break;
        const type = buf.readUInt16LE(off + 4);
        if (type === NLMSG_ERROR) {
          got++;
          const errno = -buf.readInt32LE(off + NLMSG_HDRLEN);
          if (errno !== 0 && !failure) failure = new KernelError(context, errno);
        } else if (onMessage) {
          // Echoed notifications of the commit come before the acknowledgement (the kernel sends those last).
          const at = off;
          onMessage(type, buf.readUInt32LE(off + 8), () => parseAttrs(buf, at + NLMSG_HDRLEN + 4, at + len));
        }
        off += (len + 3) & ~3;
      }
      // After an error the kernel aborts the batch: the acks of the other messages may not all come.
      if (failure) break;
    }
    if (failure) throw failure;
  } finally {
    // Off the event loop and not waited for: closing after a commit that removed anything waits in the kernel for
    // that transaction's destruction, an RCU grace period (7-15 ms here), and the commit is acknowledged already.
    if (!via) void c.closeAsync(fd).catch(() => undefined);
  }
}
