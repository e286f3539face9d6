/**
 * Block files and records, byte-compatible with Go ims 2.0:
 *   block  = header(32: MAGIC, version 1<<16, 24 zero bytes) record*
 *   record = MAGIC | length int32 | seq int32 | cmd u8 | version u8 | flag u8 | 0 | body | MAGIC
 * All integers big-endian. Pure functions only: no I/O here.
 */
import {
  BLOCK_HEADER_SIZE,
  BLOCK_VERSION,
  MAGIC,
  MAX_BODY_SIZE,
  MESSAGE_HEADER_SIZE,
  RECORD_OVERHEAD,
} from './constants.js';

export interface RawMessage {
  cmd: number;
  seq: number;
  version: number;
  flag: number;
  body: Buffer;
}

export function encodeBlockHeader(): Buffer {
  const buf = Buffer.alloc(BLOCK_HEADER_SIZE);
  buf.writeUInt32BE(MAGIC, 0);
  buf.writeUInt32BE(BLOCK_VERSION, 4);
  return buf;
}

/** Why a block header is unacceptable, or null when it is a Go 2.0 header. */
export function blockHeaderProblem(header: Buffer): string | null {
  if (header.length < BLOCK_HEADER_SIZE)
    return `header is ${header.length} bytes, expected ${BLOCK_HEADER_SIZE}`;
  const magic = header.readUInt32BE(0);
  if (magic !== MAGIC) return `header magic is 0x${magic.toString(16)}, expected 0x${MAGIC.toString(16)}`;
  const version = header.readUInt32BE(4);
  if (version !== BLOCK_VERSION)
    return `header version is 0x${version.toString(16)}, expected 0x${BLOCK_VERSION.toString(16)}`;
  return null;
}

export function recordSize(bodyLength: number): number {
  return RECORD_OVERHEAD + bodyLength;
}

/** Writes the 12-byte message header at `offset`. */
export function writeMessageHeader(
  target: Buffer,
  offset: number,
  bodyLength: number,
  seq: number,
  cmd: number,
  version: number,
  flag: number,
): void {
  target.writeInt32BE(bodyLength, offset);
  target.writeInt32BE(seq | 0, offset + 4);
  target[offset + 8] = cmd;
  target[offset + 9] = version;
  target[offset + 10] = flag;
  target[offset + 11] = 0;
}

/** Writes header + body (the framing of a message on the sync wire). Returns the offset after it. */
export function writeFramedMessage(target: Buffer, offset: number, msg: RawMessage): number {
  writeMessageHeader(target, offset, msg.body.length, msg.seq, msg.cmd, msg.version, msg.flag);
  msg.body.copy(target, offset + MESSAGE_HEADER_SIZE);
  return offset + MESSAGE_HEADER_SIZE + msg.body.length;
}

/** Writes a whole record at `offset`. Returns the offset after it. */
export function writeRecord(target: Buffer, offset: number, msg: RawMessage): number {
  target.writeUInt32BE(MAGIC, offset);
  const end = writeFramedMessage(target, offset + 4, msg);
  target.writeUInt32BE(MAGIC, end);
  return end + 4;
}

export function encodeRecord(msg: RawMessage): Buffer {
  const buf = Buffer.allocUnsafe(recordSize(msg.body.length));
  writeRecord(buf, 0, msg);
  return buf;
}

export type RecordDecode =
  | { kind: 'ok'; message: RawMessage; size: number }
  /** The bytes end before the record does (a torn tail, or a read that was too short). */
  | { kind: 'short'; need: number }
  | { kind: 'corrupt'; reason: string };

/**
 * Decodes the record starting at `offset` in `buf` (valid bytes end at `end`). The body is a view into
 * `buf` (copy it if `buf` is reused).
 */
export function decodeRecord(buf: Buffer, offset: number, end: number = buf.length): RecordDecode {
  const avail = end - offset;
  if (avail < 4 + MESSAGE_HEADER_SIZE) return { kind: 'short', need: 4 + MESSAGE_HEADER_SIZE };
  const magic = buf.readUInt32BE(offset);
  if (magic !== MAGIC)
    return { kind: 'corrupt', reason: `bad record magic 0x${magic.toString(16).padStart(8, '0')}` };
  const length = buf.readInt32BE(offset + 4);
  if (length < 0 || length > MAX_BODY_SIZE) return { kind: 'corrupt', reason: `bad body length ${length}` };
  const size = RECORD_OVERHEAD + length;
  if (avail < size) return { kind: 'short', need: size };
  const tail = buf.readUInt32BE(offset + size - 4);
  if (tail !== MAGIC)
    return { kind: 'corrupt', reason: `bad trailing magic 0x${tail.toString(16).padStart(8, '0')}` };
  const bodyStart = offset + 4 + MESSAGE_HEADER_SIZE;
  return {
    kind: 'ok',
    size,
    message: {
      seq: buf.readInt32BE(offset + 8),
      cmd: buf[offset + 12],
      version: buf[offset + 13],
      flag: buf[offset + 14],
      body: buf.subarray(bodyStart, bodyStart + length),
    },
  };
}

/** Decodes a header+body framed message (no MAGIC), as carried in sync batches. */
export function decodeFramedMessage(
  buf: Buffer,
  offset: number,
  end: number,
  maxBody: number = MAX_BODY_SIZE,
):
  | { kind: 'ok'; message: RawMessage; size: number }
  | { kind: 'short' }
  | { kind: 'corrupt'; reason: string } {
  if (end - offset < MESSAGE_HEADER_SIZE) return { kind: 'short' };
  const length = buf.readInt32BE(offset);
  if (length < 0 || length > maxBody) return { kind: 'corrupt', reason: `bad message length ${length}` };
  if (end - offset < MESSAGE_HEADER_SIZE + length) return { kind: 'short' };
  const bodyStart = offset + MESSAGE_HEADER_SIZE;
  return {
    kind: 'ok',
    size: MESSAGE_HEADER_SIZE + length,
    message: {
      seq: buf.readInt32BE(offset + 4),
      cmd: buf[offset + 8],
      version: buf[offset + 9],
      flag: buf[offset + 10],
      body: buf.subarray(bodyStart, bodyStart + length),
    },
  };
}
