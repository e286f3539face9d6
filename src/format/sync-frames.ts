/**
 * Frames of the replication link, byte-compatible with Go ims 2.0 (spec "Replication"):
 *   frame = header(12: length int32, seq int32, cmd u8, version u8, flag u8, 0) + body, big-endian, no MAGIC
 *   MSG_STORAGE_SYNC_BEGIN (220)          body = cursor int64 (the id the slave's next write would get)
 *   MSG_STORAGE_SYNC_MESSAGE_BATCH (222)  body = first_id int64, last_id int64, count int32, count framed messages
 *   MSG_STORAGE_SYNC_MESSAGE (221)        body = msgid int64, device_id int64, length int16, one framed message
 * Pure functions only: no I/O here.
 */
import { Cmd, MAX_BODY_SIZE, MAX_SYNC_FRAME_BODY, MESSAGE_HEADER_SIZE } from './constants.js';
import { readId, writeId } from './int64.js';
import { decodeFramedMessage, writeFramedMessage, writeMessageHeader, type RawMessage } from './record.js';

export const SYNC_FRAME_HEADER_SIZE = MESSAGE_HEADER_SIZE;
export const SYNC_BEGIN_BODY_SIZE = 8;
export const BATCH_HEAD_SIZE = 8 + 8 + 4;
/** Most messages in one catch-up batch (Go's backlog batch size). */
export const BACKLOG_BATCH_MESSAGES = 5000;
/** Most messages in one live batch (Go's live cache size). */
export const LIVE_BATCH_MESSAGES = 1000;
/**
 * Most bytes of framed messages in one batch. Go slaves refuse frames of 32 MiB or more (Go bug 21), and
 * 5000 messages of up to 32 KiB could pass that, so batches are cut by bytes too, well below the limit.
 */
export const MAX_BATCH_BYTES = 16 * 1024 * 1024;

export interface SyncFrameHeader {
  length: number;
  seq: number;
  cmd: number;
  version: number;
  flag: number;
}

export interface SyncFrame extends SyncFrameHeader {
  body: Buffer;
}

export interface SyncBatch {
  firstId: number;
  lastId: number;
  messages: RawMessage[];
}

export type Decoded<T> = { ok: true; value: T } | { ok: false; problem: string };

function bad<T>(problem: string): Decoded<T> {
  return { ok: false, problem };
}

export function decodeFrameHeader(buf: Buffer, offset = 0): SyncFrameHeader {
  return {
    length: buf.readInt32BE(offset),
    seq: buf.readInt32BE(offset + 4),
    cmd: buf[offset + 8],
    version: buf[offset + 9],
    flag: buf[offset + 10],
  };
}

/** Why a frame header is unacceptable before its body is read (null when it is fine). */
export function frameHeaderProblem(h: SyncFrameHeader, maxBody: number = MAX_SYNC_FRAME_BODY): string | null {
  if (h.length < 0) return `frame length ${h.length} is negative`;
  if (h.length > maxBody) return `frame length ${h.length} is over the limit of ${maxBody} bytes`;
  return null;
}

/** One whole frame: header + body. */
export function encodeFrame(seq: number, cmd: number, body: Buffer, version = 0, flag = 0): Buffer {
  const out = Buffer.allocUnsafe(SYNC_FRAME_HEADER_SIZE + body.length);
  writeMessageHeader(out, 0, body.length, seq, cmd, version, flag);
  body.copy(out, SYNC_FRAME_HEADER_SIZE);
  return out;
}

/** The frame a slave sends first: MSG_STORAGE_SYNC_BEGIN with its cursor. */
export function encodeSyncBegin(cursor: number, seq = 1): Buffer {
  const body = Buffer.alloc(SYNC_BEGIN_BODY_SIZE);
  writeId(body, cursor, 0);
  return encodeFrame(seq, Cmd.STORAGE_SYNC_BEGIN, body);
}

export function decodeSyncBeginBody(body: Buffer): Decoded<number> {
  if (body.length !== SYNC_BEGIN_BODY_SIZE) {
    return bad(`MSG_STORAGE_SYNC_BEGIN body is ${body.length} bytes, expected ${SYNC_BEGIN_BODY_SIZE}`);
  }
  const cursor = readId(body, 0);
  if (Number.isNaN(cursor))
    return bad(`MSG_STORAGE_SYNC_BEGIN cursor 0x${body.toString('hex')} is out of range`);
  return { ok: true, value: cursor };
}

/** Size of a batch frame's body holding these messages. */
export function batchBodySize(messages: readonly RawMessage[]): number {
  let size = BATCH_HEAD_SIZE;
  for (const m of messages) size += MESSAGE_HEADER_SIZE + m.body.length;
  return size;
}

/** A whole MSG_STORAGE_SYNC_MESSAGE_BATCH frame. */
export function encodeBatchFrame(
  seq: number,
  firstId: number,
  lastId: number,
  messages: readonly RawMessage[],
): Buffer {
  const bodySize = batchBodySize(messages);
  const out = Buffer.allocUnsafe(SYNC_FRAME_HEADER_SIZE + bodySize);
  writeMessageHeader(out, 0, bodySize, seq, Cmd.STORAGE_SYNC_MESSAGE_BATCH, 0, 0);
  let off = SYNC_FRAME_HEADER_SIZE;
  writeId(out, firstId, off);
  writeId(out, lastId, off + 8);
  out.writeInt32BE(messages.length, off + 16);
  off += BATCH_HEAD_SIZE;
  for (const m of messages) off = writeFramedMessage(out, off, m);
  return out;
}

/**
 * Decodes a batch body. Every message must parse (length within Go's 32 KiB record limit) and the
 * body must end exactly after the last one. Message bodies are views into `body`.
 */
export function decodeBatchBody(body: Buffer, maxMessageBody: number = MAX_BODY_SIZE): Decoded<SyncBatch> {
  if (body.length < BATCH_HEAD_SIZE)
    return bad(`batch body is ${body.length} bytes, shorter than its ${BATCH_HEAD_SIZE}-byte head`);
  const firstId = readId(body, 0);
  const lastId = readId(body, 8);
  const count = body.readInt32BE(16);
  if (Number.isNaN(firstId) || Number.isNaN(lastId))
    return bad(`batch ids ${body.subarray(0, 16).toString('hex')} are out of range`);
  if (count < 0) return bad(`batch count ${count} is negative`);
  if (count > 0 && lastId < firstId) return bad(`batch last_id ${lastId} is before first_id ${firstId}`);
  const messages: RawMessage[] = [];
  let off = BATCH_HEAD_SIZE;
  for (let i = 0; i < count; i++) {
    const r = decodeFramedMessage(body, off, body.length, maxMessageBody);
    if (r.kind === 'short') return bad(`batch says ${count} messages but its body ends inside message ${i}`);
    if (r.kind === 'corrupt') return bad(`batch message ${i} at body offset ${off}: ${r.reason}`);
    messages.push(r.message);
    off += r.size;
  }
  if (off !== body.length) return bad(`batch has ${body.length - off} bytes after its ${count} messages`);
  return { ok: true, value: { firstId, lastId, messages } };
}

/** One MSG_STORAGE_SYNC_MESSAGE frame (Go defines it; its 2.0 master never sends it). */
export function encodeSyncMessageFrame(
  seq: number,
  msgId: number,
  deviceId: bigint,
  msg: RawMessage,
): Buffer {
  const inner = MESSAGE_HEADER_SIZE + msg.body.length;
  const body = Buffer.allocUnsafe(8 + 8 + 2 + inner);
  writeId(body, msgId, 0);
  body.writeBigInt64BE(deviceId, 8);
  body.writeInt16BE(inner, 16);
  writeFramedMessage(body, 18, msg);
  return encodeFrame(seq, Cmd.STORAGE_SYNC_MESSAGE, body);
}

export function decodeSyncMessageBody(
  body: Buffer,
  maxMessageBody: number = MAX_BODY_SIZE,
): Decoded<{ msgId: number; deviceId: bigint; message: RawMessage }> {
  if (body.length < 18) return bad(`MSG_STORAGE_SYNC_MESSAGE body is ${body.length} bytes, shorter than 18`);
  const msgId = readId(body, 0);
  if (Number.isNaN(msgId))
    return bad(`MSG_STORAGE_SYNC_MESSAGE msgid ${body.subarray(0, 8).toString('hex')} is out of range`);
  const deviceId = body.readBigInt64BE(8);
  const inner = body.readInt16BE(16);
  if (inner < 0 || 18 + inner !== body.length) {
    return bad(`MSG_STORAGE_SYNC_MESSAGE says ${inner} message bytes, body holds ${body.length - 18}`);
  }
  const r = decodeFramedMessage(body, 18, body.length, maxMessageBody);
  if (r.kind === 'short') return bad('MSG_STORAGE_SYNC_MESSAGE message is cut short');
  if (r.kind === 'corrupt') return bad(`MSG_STORAGE_SYNC_MESSAGE message: ${r.reason}`);
  if (18 + r.size !== body.length)
    return bad(`MSG_STORAGE_SYNC_MESSAGE has ${body.length - 18 - r.size} bytes after its message`);
  return { ok: true, value: { msgId, deviceId, message: r.message } };
}

/**
 * Splits a byte stream into frames. Returns the whole frames found from `offset`, where the unparsed
 * rest begins, and a problem when a header is unacceptable (the stream cannot be resynchronised then).
 */
export function splitFrames(
  buf: Buffer,
  offset = 0,
  maxBody: number = MAX_SYNC_FRAME_BODY,
): { frames: SyncFrame[]; rest: number; problem: string | null } {
  const frames: SyncFrame[] = [];
  let off = offset;
  while (buf.length - off >= SYNC_FRAME_HEADER_SIZE) {
    const h = decodeFrameHeader(buf, off);
    const problem = frameHeaderProblem(h, maxBody);
    if (problem) return { frames, rest: off, problem };
    if (buf.length - off - SYNC_FRAME_HEADER_SIZE < h.length) break;
    const start = off + SYNC_FRAME_HEADER_SIZE;
    frames.push({ ...h, body: buf.subarray(start, start + h.length) });
    off = start + h.length;
  }
  return { frames, rest: off, problem: null };
}

/*
 * ims extensions of the sync link. An ims slave asks for them by setting SYNC_FLAG_IMS_EXTENSIONS in the
 * flag byte of its MSG_STORAGE_SYNC_BEGIN header (Go's master reads the flag and ignores it, and never
 * reads from a slave after the handshake, so an ims slave sends nothing more until it is answered).
 * An ims master answers such a slave, before any batch, with
 *   MSG_STORAGE_SYNC_HELLO (230)      body = epoch int64, log_end int64, count int32, count × (epoch int64, start_id int64)
 * and later sends, after each batch and when idle,
 *   MSG_STORAGE_SYNC_HEARTBEAT (232)  body = epoch int64, log_end int64, sent_at_ms int64
 *                                     [, acknowledged_end int64]
 * (acknowledged_end, the master's high watermark, only to a slave that also set
 * SYNC_FLAG_ACKNOWLEDGED_END: a slave answers reads below it; an older ims slave gets 24 bytes)
 * The slave names itself once, after the hello, with
 *   MSG_STORAGE_SYNC_IDENT (233)      body = the node's name, UTF-8, 1 to 255 bytes
 * and reports what is durable on its disk with
 *   MSG_STORAGE_SYNC_ACK (231)        body = durable_end int64, epoch int64
 * When the slave's cursor lies in blocks the master's retention deleted, the master sends, after its
 * hello, and then closes the link:
 *   MSG_STORAGE_SYNC_RETAINED_FROM (234)  body = first_id int64 (the first record id the master keeps)
 * A Go slave (flag clear) gets exactly Go's stream; a Go master never sees an extension frame.
 */
export const SYNC_FLAG_IMS_EXTENSIONS = 0x80;
/** The slave wants the master's acknowledged end in heartbeats (with SYNC_FLAG_IMS_EXTENSIONS). */
export const SYNC_FLAG_ACKNOWLEDGED_END = 0x40;
/**
 * With the extensions flag: a reader that wants the master's durable end (`ims backup`), not its log
 * end, in the hello's log_end, so that it copies only records on the master's disk. Such a reader
 * never acknowledges. A master that does not know the flag (Go, older ims) ignores it.
 */
export const SYNC_FLAG_DURABLE_END = 0x20;
export const SYNC_ACK_BODY_SIZE = 16;
export const SYNC_HEARTBEAT_BODY_SIZE = 24;
export const SYNC_HEARTBEAT_WITH_END_BODY_SIZE = 32;
const HELLO_HEAD_SIZE = 20;
/** More epochs than any real history holds: a bigger count is a corrupt frame. */
export const MAX_HELLO_EPOCHS = 100_000;

export interface EpochMark {
  epoch: number;
  startId: number;
}

export interface SyncHello {
  epoch: number;
  logEnd: number;
  history: EpochMark[];
}

export interface SyncAck {
  durableEnd: number;
  epoch: number;
}

export interface SyncHeartbeat {
  epoch: number;
  logEnd: number;
  sentAt: number;
  /** The master's acknowledged end, when the slave asked for it. */
  acknowledgedEnd?: number;
}

/** MSG_STORAGE_SYNC_BEGIN asking for the ims extensions. */
export function encodeExtendedSyncBegin(cursor: number, seq = 1, durableEnd = false): Buffer {
  const body = Buffer.alloc(SYNC_BEGIN_BODY_SIZE);
  writeId(body, cursor, 0);
  // A replica asks for the acknowledged end (its reads stop there); a backup for the durable end.
  const flag = SYNC_FLAG_IMS_EXTENSIONS | (durableEnd ? SYNC_FLAG_DURABLE_END : SYNC_FLAG_ACKNOWLEDGED_END);
  return encodeFrame(seq, Cmd.STORAGE_SYNC_BEGIN, body, 0, flag);
}

export function encodeHelloFrame(seq: number, hello: SyncHello): Buffer {
  const body = Buffer.alloc(HELLO_HEAD_SIZE + 16 * hello.history.length);
  writeId(body, hello.epoch, 0);
  writeId(body, hello.logEnd, 8);
  body.writeInt32BE(hello.history.length, 16);
  let off = HELLO_HEAD_SIZE;
  for (const m of hello.history) {
    writeId(body, m.epoch, off);
    writeId(body, m.startId, off + 8);
    off += 16;
  }
  return encodeFrame(seq, Cmd.STORAGE_SYNC_HELLO, body);
}

function nonNegative(name: string, v: number): string | null {
  return Number.isNaN(v) || v < 0 ? `${name} is out of range` : null;
}

export function decodeHelloBody(body: Buffer): Decoded<SyncHello> {
  const what = 'MSG_STORAGE_SYNC_HELLO';
  if (body.length < HELLO_HEAD_SIZE)
    return bad(`${what} body is ${body.length} bytes, shorter than ${HELLO_HEAD_SIZE}`);
  const epoch = readId(body, 0);
  const logEnd = readId(body, 8);
  const count = body.readInt32BE(16);
  const p = nonNegative(`${what} epoch`, epoch) ?? nonNegative(`${what} log_end`, logEnd);
  if (p) return bad(p);
  if (count < 0 || count > MAX_HELLO_EPOCHS) return bad(`${what} epoch count ${count} is out of range`);
  if (body.length !== HELLO_HEAD_SIZE + 16 * count) {
    return bad(
      `${what} body is ${body.length} bytes, expected ${HELLO_HEAD_SIZE + 16 * count} for ${count} epochs`,
    );
  }
  const history: EpochMark[] = [];
  for (let i = 0, off = HELLO_HEAD_SIZE; i < count; i++, off += 16) {
    const m = { epoch: readId(body, off), startId: readId(body, off + 8) };
    const q =
      nonNegative(`${what} epoch ${i}`, m.epoch) ?? nonNegative(`${what} start of epoch ${i}`, m.startId);
    if (q) return bad(q);
    const prev = history[i - 1];
    if (prev && (m.epoch <= prev.epoch || m.startId < prev.startId)) {
      return bad(`${what} history is not in order at entry ${i} (epoch ${m.epoch} from ${m.startId})`);
    }
    history.push(m);
  }
  const last = history[history.length - 1];
  if (last && last.epoch > epoch)
    return bad(`${what} history holds epoch ${last.epoch}, newer than its epoch ${epoch}`);
  return { ok: true, value: { epoch, logEnd, history } };
}

export function encodeAckFrame(seq: number, ack: SyncAck): Buffer {
  const body = Buffer.alloc(SYNC_ACK_BODY_SIZE);
  writeId(body, ack.durableEnd, 0);
  writeId(body, ack.epoch, 8);
  return encodeFrame(seq, Cmd.STORAGE_SYNC_ACK, body);
}

export function decodeAckBody(body: Buffer): Decoded<SyncAck> {
  if (body.length !== SYNC_ACK_BODY_SIZE) {
    return bad(`MSG_STORAGE_SYNC_ACK body is ${body.length} bytes, expected ${SYNC_ACK_BODY_SIZE}`);
  }
  const durableEnd = readId(body, 0);
  const epoch = readId(body, 8);
  const p =
    nonNegative('MSG_STORAGE_SYNC_ACK durable_end', durableEnd) ??
    nonNegative('MSG_STORAGE_SYNC_ACK epoch', epoch);
  return p ? bad(p) : { ok: true, value: { durableEnd, epoch } };
}

export function encodeHeartbeatFrame(seq: number, hb: SyncHeartbeat): Buffer {
  const withEnd = hb.acknowledgedEnd !== undefined;
  const body = Buffer.alloc(withEnd ? SYNC_HEARTBEAT_WITH_END_BODY_SIZE : SYNC_HEARTBEAT_BODY_SIZE);
  writeId(body, hb.epoch, 0);
  writeId(body, hb.logEnd, 8);
  writeId(body, hb.sentAt, 16);
  if (withEnd) writeId(body, hb.acknowledgedEnd!, 24);
  return encodeFrame(seq, Cmd.STORAGE_SYNC_HEARTBEAT, body);
}

export function decodeHeartbeatBody(body: Buffer): Decoded<SyncHeartbeat> {
  const what = 'MSG_STORAGE_SYNC_HEARTBEAT';
  if (body.length !== SYNC_HEARTBEAT_BODY_SIZE && body.length !== SYNC_HEARTBEAT_WITH_END_BODY_SIZE) {
    return bad(
      `${what} body is ${body.length} bytes, expected ${SYNC_HEARTBEAT_BODY_SIZE} or ${SYNC_HEARTBEAT_WITH_END_BODY_SIZE}`,
    );
  }
  const hb: SyncHeartbeat = { epoch: readId(body, 0), logEnd: readId(body, 8), sentAt: readId(body, 16) };
  if (body.length === SYNC_HEARTBEAT_WITH_END_BODY_SIZE) hb.acknowledgedEnd = readId(body, 24);
  const p =
    nonNegative(`${what} epoch`, hb.epoch) ??
    nonNegative(`${what} log_end`, hb.logEnd) ??
    nonNegative(`${what} sent_at`, hb.sentAt) ??
    (hb.acknowledgedEnd === undefined ? null : nonNegative(`${what} acknowledged_end`, hb.acknowledgedEnd));
  if (p) return bad(p);
  if (hb.acknowledgedEnd !== undefined && hb.acknowledgedEnd > hb.logEnd)
    return bad(`${what} acknowledged_end ${hb.acknowledgedEnd} is past its log_end ${hb.logEnd}`);
  return { ok: true, value: hb };
}

export const MAX_NODE_NAME_BYTES = 255;

export function encodeIdentFrame(seq: number, nodeName: string): Buffer {
  const body = Buffer.from(nodeName, 'utf8');
  if (body.length < 1 || body.length > MAX_NODE_NAME_BYTES) {
    throw new RangeError(`node name must be 1 to ${MAX_NODE_NAME_BYTES} bytes of UTF-8, not ${body.length}`);
  }
  return encodeFrame(seq, Cmd.STORAGE_SYNC_IDENT, body);
}

export function decodeIdentBody(body: Buffer): Decoded<string> {
  if (body.length < 1 || body.length > MAX_NODE_NAME_BYTES) {
    return bad(`MSG_STORAGE_SYNC_IDENT body is ${body.length} bytes, expected 1 to ${MAX_NODE_NAME_BYTES}`);
  }
  const name = body.toString('utf8');
  if (!Buffer.from(name, 'utf8').equals(body) || body.some((byte) => byte < 0x20)) {
    return bad('MSG_STORAGE_SYNC_IDENT node name is not printable UTF-8');
  }
  return { ok: true, value: name };
}

export function encodeRetainedFromFrame(seq: number, firstId: number): Buffer {
  const body = Buffer.alloc(8);
  writeId(body, firstId, 0);
  return encodeFrame(seq, Cmd.STORAGE_SYNC_RETAINED_FROM, body);
}

export function decodeRetainedFromBody(body: Buffer): Decoded<{ firstId: number }> {
  const what = 'MSG_STORAGE_SYNC_RETAINED_FROM';
  if (body.length !== 8) return bad(`${what} body is ${body.length} bytes, expected 8`);
  const firstId = readId(body, 0);
  const p = nonNegative(`${what} first_id`, firstId);
  return p ? bad(p) : { ok: true, value: { firstId } };
}
