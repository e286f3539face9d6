/**
 * What the engine and the tools share when they read a block: finding whether whole records follow a
 * bad spot. That single question decides, for start-up, `verify` and `repair` alike, whether bad bytes
 * are a torn tail (nothing whole after them: a crash can leave that, so start-up cuts it) or damage
 * (whole records follow: reported with file and offset, never cut silently).
 */
import * as fs from 'node:fs';
import { BLOCK_HEADER_SIZE, MAGIC, MAX_BODY_SIZE, RECORD_OVERHEAD } from '../format/constants.js';
import { decodeRecord, type RawMessage } from '../format/record.js';
import { recordChecksum } from '../format/checksum-file.js';
import type { BlockChecksums } from './record-checksums.js';

const CHUNK = 1 << 20;
const hex = (v: number): string => `0x${v.toString(16).padStart(8, '0')}`;

/** The error text of a record whose bytes disagree with its checksum. */
export function checksumMismatch(id: number, got: number, want: number): string {
  return `checksum mismatch in message id ${id}: its bytes give ${hex(got)}, its sidecar says ${hex(want)}`;
}
const MAX_RECORD = RECORD_OVERHEAD + MAX_BODY_SIZE;

/**
 * The offset of the first whole record after `offset` in the file `fd` of `fileSize` bytes: a MAGIC that
 * starts a record that decodes and, where the block keeps checksums, is at an offset the sidecar lists
 * and matches its checksum. Null when none follows.
 */
export function nextWholeRecord(
  fd: number,
  fileSize: number,
  offset: number,
  sums: BlockChecksums | null,
): number | null {
  const magic = Buffer.alloc(4);
  magic.writeUInt32BE(MAGIC);
  const buf = Buffer.allocUnsafe(CHUNK + MAX_RECORD);
  let pos = offset + 1;
  while (pos < fileSize) {
    const n = fs.readSync(fd, buf, 0, Math.min(buf.length, fileSize - pos), pos);
    if (n <= 0) break;
    const searchEnd = Math.min(n, CHUNK);
    let at = buf.indexOf(magic, 0);
    while (at >= 0 && at < searchEnd) {
      const r = decodeRecord(buf, at, n);
      if (r.kind === 'ok') {
        const want = sums ? sums.find(pos + at) : -1;
        if (want !== -1) {
          if (recordChecksum(buf, at, at + r.size) === want) return pos + at;
        } else if (!sums || pos + at > sums.lastOffset) {
          // No checksum: a block Go wrote, or past the sidecar's last entry. Where the sidecar covers the
          // block, every record start has an entry, so a MAGIC at any other offset is inside a record.
          return pos + at;
        }
      }
      at = buf.indexOf(magic, at + 1);
    }
    pos += searchEnd;
  }
  return null;
}

export interface BlockScan {
  /** Where the scan stopped: the end of the data, or the start of the first bytes that are not a record. */
  end: number;
  fileSize: number;
  /** Why it stopped before the end (null: it reached the end). */
  problem: string | null;
}

/** What a scan reports besides each record: checksum coverage and how far it has read. */
export interface ScanReporter {
  /** A record was checked against its checksum (true) or had none to check (false). */
  checked?(withChecksum: boolean): void;
  progress?(offset: number): void;
}

/**
 * The one block reader of the engine and the tools (LevelDB's log reader, with a reporter): calls
 * `onRecord` for each whole record of the file `fd` from `fromOffset`, in order, checking each against
 * the block's checksums where it has one. Stops at `fileSize` or at the first bytes that are not a whole,
 * matching record, and says why. `describe(offset)` names a record's message id in a mismatch.
 */
export function scanBlock(
  fd: number,
  fileSize: number,
  fromOffset: number,
  sums: BlockChecksums | null,
  idOf: (offset: number) => number,
  onRecord: (offset: number, msg: RawMessage, bytes: Buffer) => void,
  reporter: ScanReporter = {},
): BlockScan {
  const chunk = Buffer.allocUnsafe(CHUNK + MAX_RECORD);
  let pos = Math.max(fromOffset, BLOCK_HEADER_SIZE);
  let bufStart = pos;
  let bufEnd = pos;
  for (;;) {
    if (pos >= fileSize) return { end: pos, fileSize, problem: null };
    // Keep at least one largest record ahead in the buffer, so only the file's end can cut one short.
    if (bufEnd < fileSize && bufEnd - pos < MAX_RECORD) {
      const n = fs.readSync(fd, chunk, 0, Math.min(chunk.length, fileSize - pos), pos);
      bufStart = pos;
      bufEnd = pos + n;
      reporter.progress?.(pos);
    }
    const result = decodeRecord(chunk, pos - bufStart, bufEnd - bufStart);
    if (result.kind === 'short') {
      return {
        end: pos,
        fileSize,
        problem: `partial record: ${fileSize - pos} bytes left where ${result.need} are needed`,
      };
    }
    if (result.kind === 'corrupt') return { end: pos, fileSize, problem: result.reason };
    const at = pos - bufStart;
    const want = sums ? sums.find(pos) : -1;
    if (want !== -1) {
      const got = recordChecksum(chunk, at, at + result.size);
      if (got !== want) return { end: pos, fileSize, problem: checksumMismatch(idOf(pos), got, want) };
    }
    reporter.checked?.(want !== -1);
    onRecord(pos, result.message, chunk.subarray(at, at + result.size));
    pos += result.size;
  }
}
