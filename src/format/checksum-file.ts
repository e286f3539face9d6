/**
 * Checksum sidecars: `checksums/message_N.crc` holds a CRC32 of every record ims wrote into (or received
 * as a slave for) block `message_N`, so the block itself stays byte-identical to Go's format. The
 * sidecars live in a subfolder because Go globs `message_*` in the data folder and refuses to start on
 * any name there that is not `message_<number>`. Layout, big-endian:
 *
 *   header (32): magic "IMCK" | format version u32 (1) | block number u32 | 0 u32 |
 *                sealed_at_ms u64 (0 while it is the write block) | 0 u32 | crc32 of the 28 bytes before
 *   entry  (8):  record offset u32 | crc32 of the record's bytes, MAGIC to MAGIC
 *
 * Entries are appended in log order, so their offsets increase. A file whose length is not header +
 * whole entries ends in an entry torn by a crash (of a record never acknowledged); readers ignore it.
 * Pure encode/decode: no I/O.
 */
import { crc32 } from 'node:zlib';
import { crc32Of } from './crc32.js';

export const CHECKSUM_DIR = 'checksums';
export const CHECKSUM_MAGIC = 0x494d434b; // "IMCK"
export const CHECKSUM_FORMAT_VERSION = 1;
export const CHECKSUM_HEADER_SIZE = 32;
export const CHECKSUM_ENTRY_SIZE = 8;

export function checksumFileName(blockNo: number): string {
  return `message_${blockNo}.crc`;
}

export interface ChecksumHeader {
  blockNo: number;
  /** When the block was sealed (the next block began), ms since the epoch; 0 for the write block. */
  sealedAt: number;
}

export function encodeChecksumHeader(h: ChecksumHeader): Buffer {
  const buf = Buffer.alloc(CHECKSUM_HEADER_SIZE);
  buf.writeUInt32BE(CHECKSUM_MAGIC, 0);
  buf.writeUInt32BE(CHECKSUM_FORMAT_VERSION, 4);
  buf.writeUInt32BE(h.blockNo, 8);
  buf.writeBigUInt64BE(BigInt(h.sealedAt), 16);
  buf.writeUInt32BE(crc32(buf.subarray(0, 28)), 28);
  return buf;
}

export type ChecksumHeaderDecode = { ok: true; value: ChecksumHeader } | { ok: false; problem: string };

export function decodeChecksumHeader(buf: Buffer, expectedBlock: number): ChecksumHeaderDecode {
  if (buf.length < CHECKSUM_HEADER_SIZE)
    return { ok: false, problem: `header is ${buf.length} bytes, expected ${CHECKSUM_HEADER_SIZE}` };
  const magic = buf.readUInt32BE(0);
  if (magic !== CHECKSUM_MAGIC) return { ok: false, problem: `bad magic 0x${magic.toString(16)}` };
  const version = buf.readUInt32BE(4);
  if (version !== CHECKSUM_FORMAT_VERSION) return { ok: false, problem: `unknown format version ${version}` };
  const want = buf.readUInt32BE(28);
  const got = crc32(buf.subarray(0, 28));
  if (want !== got) return { ok: false, problem: 'header checksum mismatch' };
  const blockNo = buf.readUInt32BE(8);
  if (blockNo !== expectedBlock)
    return { ok: false, problem: `header says block ${blockNo}, not ${expectedBlock}` };
  return { ok: true, value: { blockNo, sealedAt: Number(buf.readBigUInt64BE(16)) } };
}

/** CRC32 of one record's bytes (MAGIC to MAGIC): zlib's CRC-32, computed as crc32.ts explains. */
export function recordChecksum(buf: Buffer, start: number, end: number): number {
  return crc32Of(buf, start, end);
}

/** Number of whole entries in a sidecar file of `fileSize` bytes. */
export function checksumEntryCount(fileSize: number): number {
  return Math.max(0, Math.floor((fileSize - CHECKSUM_HEADER_SIZE) / CHECKSUM_ENTRY_SIZE));
}
