// node-zookeeper-client's wire path, made linear in the number of requests in flight. Left as the library ships it
// (1.1.3), pipelining many reads on one session (loading 100,000 objects, bench/scale) costs more CPU than reading
// them one after another should:
//   - every request is its own socket.write (TCP_NODELAY: its own segment and system call; through a veth pair the
//     sender's call also runs the receiver's network stack), ~9.5 of 25 CPU s when loading 10,000 objects;
//   - a read chunk holding k replies is copied k times: after each reply the library concatenates the rest with an
//     empty buffer and recurses (O(k²) bytes per chunk: ~3 GB copied for 100,000 replies of ~1 KiB).
// Both are fixed here, on the library's ConnectionManager prototype, once, before any client exists: requests
// queued in one tick go out in one corked write (in order: xids are still given as packets leave the queue), and
// replies are cut into frames by offset, each handed to the library's own parser alone.
//
// The library's internals are untyped and could change in another version: install() checks the shape it relies
// on and leaves the library alone (with a warning) when it does not match. core/test/store-zk-wire.test.ts covers
// both paths and the check.
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';

interface PendingPacket {
  request: { header: { type: number; xid: number } | null };
  callback?: (err: unknown, ...rest: unknown[]) => void;
}

interface ConnectionManagerLike {
  socket?: Socket;
  state: number;
  zxid: Buffer;
  pendingBuffer: Buffer | null;
  pendingQueue: PendingPacket[];
  queue(request: unknown, callback: (err: unknown, ...rest: unknown[]) => void): void;
  // Function-typed fields, not methods: install() keeps the library's own to call them with a given `this`.
  onSocketData: (this: ConnectionManagerLike, buffer: Buffer) => void;
  onPacketQueueReadable: (this: ConnectionManagerLike) => void;
  /** Ours: a flush of the packet queue is scheduled. */
  beesFlushQueued?: boolean;
  /** Ours: the start of a reply not yet complete, with the socket it came from. */
  beesPartial?: { socket: Socket | undefined; chunks: Buffer[]; bytes: number } | undefined;
}

interface ConnectionManagerClass {
  prototype: ConnectionManagerLike & { beesWire?: true };
  STATES: { CONNECTING: number };
}

/** Whether the patch is in place (tests). */
export let wireInstalled = false;

/** Installs the linear wire path on `cm` (the library's ConnectionManager class); false when its shape differs. */
export function installWire(cm: ConnectionManagerClass): boolean {
  const proto = cm.prototype;
  if (proto.beesWire) return true;
  const readable = proto.onPacketQueueReadable;
  const data = proto.onSocketData;
  if (
    typeof readable !== 'function' ||
    typeof data !== 'function' ||
    typeof proto.queue !== 'function' ||
    readable.length !== 0 ||
    data.length !== 1 ||
    typeof cm.STATES?.CONNECTING !== 'number'
  )
    return false;

  // Writes: the queue's 'readable' fires per request; sending waits for the end of the tick, so every request
  // issued in it goes out in one write (cork: one writev). Order is kept: the library's loop drains its queue in
  // order and numbers each packet as it leaves.
  proto.onPacketQueueReadable = function (this: ConnectionManagerLike): void {
    if (this.beesFlushQueued) return;
    this.beesFlushQueued = true;
    process.nextTick(() => {
      this.beesFlushQueued = false;
      const socket = this.socket;
      const corked = socket !== undefined && !socket.destroyed;
      if (corked) socket.cork();
      try {
        readable.call(this);
      } finally {
        if (corked) socket.uncork();
      }
    });
  };

  // Reads: frames are cut here by offset; the library parses each one alone (a buffer of exactly one frame, no
  // pending bytes of its own), so it never copies the rest of a chunk.
  proto.onSocketData = function (this: ConnectionManagerLike, chunk: Buffer): void {
    const socket = this.socket;
    let buf = chunk;
    const partial = this.beesPartial;
    this.beesPartial = undefined;
    // Bytes left by another socket (a connection that broke mid-reply) are not the start of this one's reply.
    if (partial && partial.socket === socket && partial.bytes > 0) {
      if (partial.bytes + chunk.length < frameEnd(partial, chunk)) {
        partial.chunks.push(chunk);
        partial.bytes += chunk.length;
        this.beesPartial = partial;
        return;
      }
      buf = Buffer.concat([...partial.chunks, chunk], partial.bytes + chunk.length);
    }
    let off = 0;
    while (buf.length - off >= 4) {
      const end = off + 4 + buf.readInt32BE(off);
      if (end > buf.length) break;
      this.pendingBuffer = null;
      const frame = buf.subarray(off, end);
      // The library cannot parse a multiRead reply (it would drop the connection): those are ours.
      if (!multiReadReply(this, frame, cm.STATES.CONNECTING)) data.call(this, frame);
      off = end;
      // The library destroys the socket on a reply it cannot match (it then reconnects): the rest is void.
      if (this.socket !== socket || socket?.destroyed) return;
    }
    if (off < buf.length) {
      const rest = buf.subarray(off);
      this.beesPartial = { socket, chunks: [rest], bytes: rest.length };
    }
  };
  proto.beesWire = true;
  return true;
}

/** Where the partial reply in `p` (continued by `next`) ends, in bytes from its start; Infinity while unknown. */
function frameEnd(p: { chunks: Buffer[]; bytes: number }, next: Buffer): number {
  if (p.bytes >= 4) {
    const head = p.chunks[0]!.length >= 4 ? p.chunks[0]! : Buffer.concat(p.chunks);
    return 4 + head.readInt32BE(0);
  }
  if (p.bytes + next.length < 4) return Number.POSITIVE_INFINITY;
  return 4 + Buffer.concat([...p.chunks, next]).readInt32BE(0);
}

/** Installs the patch on the library this process loads (once; a mismatch leaves it as shipped, with a warning). */
export function installWireOnLibrary(): void {
  if (wireInstalled) return;
  const require = createRequire(import.meta.url);
  const cm = require('node-zookeeper-client/lib/ConnectionManager.js') as ConnectionManagerClass;
  wireInstalled = installWire(cm);
  if (!wireInstalled) {
    process.emitWarning(
      'bees zk store: node-zookeeper-client is not the version this store patches (lib/ConnectionManager.js); ' +
        'reads pipelined at scale will cost more CPU',
    );
  }
}

// ---- multiRead ----
//
// ZooKeeper 3.6 and later read many znodes in one request (OpCode.multiRead): loading 100,000 objects one getData
// each costs the server a request's whole path through its processor threads per object (~120 µs of CPU per read
// on this machine, more than the client's), and 100,000 replies to frame and parse. The 3.4 protocol the library
// speaks has no such call; this adds it on the library's connection (its queue, xids, and failure on disconnect),
// and parses the reply here. A server without it answers UNIMPLEMENTED: the caller then reads one at a time.

const OP_GET_DATA = 4;
const OP_ERROR = -1;
export const OP_MULTI_READ = 22;

/** One znode as a multiRead returned it, or the error code of its read (e.g. NO_NODE). */
export type ReadReply = { data: Buffer; version: number; czxid: bigint; mzxid: bigint } | { err: number };

/** A request body in the library's record shape (byteLength + serialize): MultiHeader + GetDataRequest per path. */
class MultiReadRequest {
  private readonly paths: Buffer[];
  constructor(paths: readonly string[]) {
    this.paths = paths.map((p) => Buffer.from(p, 'utf8'));
  }
  byteLength(): number {
    // Per op: MultiHeader (type int, done bool, err int) = 9, then path (int length + bytes) and watch (bool).
    return this.paths.reduce((n, p) => n + 9 + 4 + p.length + 1, 0) + 9;
  }
  serialize(buf: Buffer, offset: number): number {
    let o = offset;
    const header = (type: number, done: boolean, err: number) => {
      o = buf.writeInt32BE(type, o);
      o = buf.writeUInt8(done ? 1 : 0, o);
      o = buf.writeInt32BE(err, o);
    };
    for (const p of this.paths) {
      header(OP_GET_DATA, false, -1);
      o = buf.writeInt32BE(p.length, o);
      o += p.copy(buf, o);
      o = buf.writeUInt8(0, o);
    }
    header(-1, true, -1);
    return o - offset;
  }
}

interface JuteLike {
  Request: new (header: unknown, payload: unknown) => unknown;
  protocol: { RequestHeader: new () => { type: number } };
}

interface ExceptionLike {
  create(code: number): Error;
}

const libs = (() => {
  let got: { jute: JuteLike; exception: ExceptionLike } | undefined;
  return () => {
    if (!got) {
      const require = createRequire(import.meta.url);
      got = {
        jute: require('node-zookeeper-client/lib/jute/index.js') as JuteLike,
        exception: require('node-zookeeper-client/lib/Exception.js') as ExceptionLike,
      };
    }
    return got;
  };
})();

/**
 * Reads `paths` in one multiRead on `client`'s connection; `cb` gets one reply per path, in order, or the error of
 * the whole request (a connection loss, UNIMPLEMENTED from a server older than 3.6). Needs the wire patch.
 */
export function multiGetData(client: unknown, paths: readonly string[], cb: (err: unknown, replies?: ReadReply[]) => void): void {
  const cm = (client as { connectionManager?: ConnectionManagerLike }).connectionManager;
  if (!wireInstalled || !cm) {
    cb(libs().exception.create(-6)); // UNIMPLEMENTED: read one at a time
    return;
  }
  const { jute } = libs();
  const header = new jute.protocol.RequestHeader();
  header.type = OP_MULTI_READ;
  cm.queue(new jute.Request(header, new MultiReadRequest(paths)), (err: unknown, replies?: unknown) => {
    if (err) cb(err);
    else cb(null, replies as ReadReply[]);
  });
}

/** Handles `frame` when it answers the multiRead at the head of the pending queue; false otherwise. */
function multiReadReply(cm: ConnectionManagerLike, frame: Buffer, connecting: number): boolean {
  if (cm.state === connecting || frame.length < 20) return false;
  const xid = frame.readInt32BE(4);
  const head = cm.pendingQueue[0];
  if (xid < 0 || head?.request.header?.type !== OP_MULTI_READ || head.request.header.xid !== xid) return false;
  cm.pendingQueue.shift();
  const zxid = frame.subarray(8, 16);
  if (zxid.readBigInt64BE(0) !== 0n) cm.zxid = Buffer.from(zxid);
  const err = frame.readInt32BE(16);
  let replies: ReadReply[];
  try {
    if (err !== 0) throw libs().exception.create(err);
    replies = parseMultiRead(frame, 20);
  } catch (e) {
    head.callback?.(e);
    return true;
  }
  head.callback?.(null, replies);
  return true;
}

function parseMultiRead(buf: Buffer, offset: number): ReadReply[] {
  const out: ReadReply[] = [];
  let o = offset;
  for (;;) {
    const type = buf.readInt32BE(o);
    const done = buf.readUInt8(o + 4) !== 0;
    o += 9;
    if (done) return out;
    if (type === OP_ERROR) {
      out.push({ err: buf.readInt32BE(o) });
      o += 4;
    } else if (type === OP_GET_DATA) {
      const len = buf.readInt32BE(o);
      o += 4;
      const data = len < 0 ? Buffer.alloc(0) : buf.subarray(o, o + len);
      o += Math.max(0, len);
      // Stat: czxid, mzxid, ctime, mtime (longs), version, cversion, aversion (ints), ephemeralOwner (long),
      // dataLength, numChildren (ints), pzxid (long): 68 bytes.
      out.push({ data, czxid: buf.readBigInt64BE(o), mzxid: buf.readBigInt64BE(o + 8), version: buf.readInt32BE(o + 32) });
      o += 68;
    } else {
      throw new Error(`unexpected result type ${type} in a multiRead reply`);
    }
  }
}
