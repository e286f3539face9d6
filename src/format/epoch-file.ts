/**
 * `epoch_history`: a node's leader-epoch history, one file beside the blocks (Go ignores it). Each entry
 * says "records from `startId` on were written in `epoch`", until the next entry's start. Layout,
 * big-endian:
 *
 *   magic "IMSEPOCH" (8) | format version u32 (1) | count u32 | count × (epoch u64, startId i64) | crc32 u32
 *
 * The CRC32 (zlib's) covers every byte before it. Pure encode/decode: no I/O.
 */
import { crc32 } from 'node:zlib';

export const EPOCH_FILE = 'epoch_history';
export const EPOCH_MAGIC = Buffer.from('IMSEPOCH', 'latin1');
export const EPOCH_FORMAT_VERSION = 1;
const HEADER_SIZE = 8 + 4 + 4;
const ENTRY_SIZE = 16;
const CRC_SIZE = 4;
/** 2^32: the high word's weight. */
const HI = 0x1_0000_0000;

export interface EpochEntry {
  /** Leader epoch, ≥ 1 (0 is the implicit epoch of everything written before any entry). */
  epoch: number;
  /** The first message id (log position) written in this epoch. */
  startId: number;
}

export type EpochDecode = { ok: true; value: EpochEntry[] } | { ok: false; problem: string };

/**
 * Why `entries` is not a valid history, or null: epochs are safe integers ≥ 1 and strictly increasing,
 * start ids are safe integers ≥ 0 and never decrease (an epoch in which nothing was written starts
 * where the next one does).
 */
export function epochHistoryProblem(entries: readonly EpochEntry[]): string | null {
  for (let i = 0; i < entries.length; i++) {
    const { epoch, startId } = entries[i];
    if (!Number.isSafeInteger(epoch) || epoch < 1) return `entry ${i}: epoch ${epoch} is not an integer ≥ 1`;
    if (!Number.isSafeInteger(startId) || startId < 0)
      return `entry ${i}: start id ${startId} is not an integer ≥ 0`;
    if (i === 0) continue;
    const prev = entries[i - 1];
    if (epoch <= prev.epoch)
      return `entry ${i}: epochs not strictly increasing (${prev.epoch} then ${epoch})`;
    if (startId < prev.startId)
      return `entry ${i}: start ids decreasing (epoch ${prev.epoch} starts at ${prev.startId}, epoch ${epoch} at ${startId})`;
  }
  return null;
}

/** The file's bytes for `entries`; throws a RangeError naming the problem for an invalid history. */
export function encodeEpochHistory(entries: readonly EpochEntry[]): Buffer {
  const problem = epochHistoryProblem(entries);
  if (problem) throw new RangeError(`invalid epoch history: ${problem}`);
  const buf = Buffer.alloc(HEADER_SIZE + entries.length * ENTRY_SIZE + CRC_SIZE);
  EPOCH_MAGIC.copy(buf, 0);
  buf.writeUInt32BE(EPOCH_FORMAT_VERSION, 8);
  buf.writeUInt32BE(entries.length, 12);
  let off = HEADER_SIZE;
  for (const { epoch, startId } of entries) {
    writeU64(buf, epoch, off);
    writeU64(buf, startId, off + 8);
    off += ENTRY_SIZE;
  }
  buf.writeUInt32BE(crc32(buf.subarray(0, off)), off);
  return buf;
}

/** Decodes the file's bytes; a problem names what is wrong (and where, for an entry). */
export function decodeEpochHistory(data: Buffer): EpochDecode {
  const fail = (problem: string): EpochDecode => ({ ok: false, problem });
  const magicBytes = Math.min(data.length, EPOCH_MAGIC.length);
  if (!data.subarray(0, magicBytes).equals(EPOCH_MAGIC.subarray(0, magicBytes)))
    return fail(`bad magic ${JSON.stringify(data.subarray(0, 8).toString('latin1'))} (expected "IMSEPOCH")`);
  if (data.length < HEADER_SIZE + CRC_SIZE)
    return fail(`truncated: ${data.length} bytes, shorter than the ${HEADER_SIZE + CRC_SIZE}-byte minimum`);
  const version = data.readUInt32BE(8);
  if (version !== EPOCH_FORMAT_VERSION)
    return fail(`unsupported format version ${version} (this server reads ${EPOCH_FORMAT_VERSION})`);
  const count = data.readUInt32BE(12);
  const expected = HEADER_SIZE + count * ENTRY_SIZE + CRC_SIZE;
  if (data.length < expected)
    return fail(`truncated: ${data.length} bytes where ${count} entries need ${expected}`);
  if (data.length > expected)
    return fail(`${data.length - expected} bytes past the end of ${count} entries (${expected} bytes)`);
  const crcAt = expected - CRC_SIZE;
  const stored = data.readUInt32BE(crcAt);
  const actual = crc32(data.subarray(0, crcAt));
  if (stored !== actual)
    return fail(`crc mismatch: stored ${hex(stored)}, computed ${hex(actual)} (the file is damaged)`);
  const value: EpochEntry[] = [];
  for (let i = 0, off = HEADER_SIZE; i < count; i++, off += ENTRY_SIZE) {
    const epoch = readU64(data, off);
    const startId = readU64(data, off + 8);
    if (epoch === null) return fail(`entry ${i}: epoch is larger than 2^53 - 1`);
    if (startId === null) return fail(`entry ${i}: start id is negative or larger than 2^53 - 1`);
    value.push({ epoch, startId });
  }
  const problem = epochHistoryProblem(value);
  return problem ? fail(problem) : { ok: true, value };
}

function writeU64(buf: Buffer, value: number, offset: number): void {
  buf.writeUInt32BE(Math.floor(value / HI), offset);
  buf.writeUInt32BE(value >>> 0, offset + 4);
}

/** A u64 (or a non-negative i64) as a JS number, or null when it is not a safe integer. */
function readU64(buf: Buffer, offset: number): number | null {
  const hi = buf.readUInt32BE(offset);
  if (hi >= 0x20_0000) return null;
  return hi * HI + buf.readUInt32BE(offset + 4);
}

function hex(n: number): string {
  return `0x${n.toString(16).padStart(8, '0')}`;
}
