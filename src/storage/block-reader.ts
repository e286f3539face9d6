/**
 * What the engine and the tools share when they read a block: finding whether whole records follow a
 * bad spot. That single question decides, for start-up, `verify` and `repair` alike, whether bad bytes
 * are a torn tail (nothing whole after them: a crash can leave that, so start-up cuts it) or damage
 * (whole records follow: reported with file and offset, never cut silently).
 */
import * as fs from 'node:fs';
import { MAGIC, MAX_BODY_SIZE, RECORD_OVERHEAD } from '../format/constants.js';
import { decodeRecord } from '../format/record.js';
import { recordChecksum } from '../format/checksum-file.js';
import type { BlockChecksums } from './record-checksums.js';

const CHUNK = 1 << 20;
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
