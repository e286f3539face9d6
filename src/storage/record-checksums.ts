/**
 * The checksum sidecars of a data folder (format: format/checksum-file.ts). BlockFiles drives them:
 * entries of the records it commits are written right after the block write and fdatasynced with the
 * block, so an acknowledged record always has its entry on disk. Sealed blocks' sidecars are loaded on
 * first use and kept in a small cache. A block without a sidecar (written by Go) is simply unchecked.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  CHECKSUM_DIR,
  CHECKSUM_ENTRY_SIZE,
  CHECKSUM_HEADER_SIZE,
  checksumEntryCount,
  checksumFileName,
  decodeChecksumHeader,
  encodeChecksumHeader,
} from '../format/checksum-file.js';
import type { StorageLogger } from './storage-logger.js';

/** Checksums of one block's records, offsets ascending. */
export class BlockChecksums {
  private offsets: Uint32Array;
  private crcs: Uint32Array;
  /** Per entry: the recheck epoch in which a read last verified its record (0: not since loaded). */
  private marks: Uint8Array;
  count = 0;

  constructor(
    readonly blockNo: number,
    public sealedAt: number,
    capacity = 1024,
  ) {
    this.offsets = new Uint32Array(capacity);
    this.crcs = new Uint32Array(capacity);
    this.marks = new Uint8Array(capacity);
  }

  add(offset: number, crc: number): void {
    if (this.count === this.offsets.length) {
      const o = new Uint32Array(this.count * 2);
      const c = new Uint32Array(this.count * 2);
      const m = new Uint8Array(this.count * 2);
      o.set(this.offsets);
      c.set(this.crcs);
      m.set(this.marks);
      this.offsets = o;
      this.crcs = c;
      this.marks = m;
    }
    this.offsets[this.count] = offset;
    this.crcs[this.count] = crc;
    // A slot freed by truncateFrom may be reused by another record: it starts unverified.
    this.marks[this.count] = 0;
    this.count++;
  }

  crcAt(i: number): number {
    return this.crcs[i];
  }

  markAt(i: number): number {
    return this.marks[i];
  }

  setMark(i: number, epoch: number): void {
    this.marks[i] = epoch;
  }

  clearMarks(): void {
    this.marks.fill(0);
  }

  /** The checksum of the record at `offset`, or -1 when it has none. */
  find(offset: number): number {
    const i = this.indexOf(offset);
    return i < 0 ? -1 : this.crcs[i];
  }

  /**
   * Index of the entry for `offset`, or -1. Interpolation search: records of a block have similar sizes,
   * so the entry sits close to where its offset lies between the first and last entries' offsets, and
   * two or three guesses find it (bisection needs 20 steps in a full block, and its mispredicted
   * branches made the lookup cost a third of a checked read). After 4 guesses it bisects, so a block
   * of very unequal records costs no more than a binary search.
   */
  indexOf(offset: number): number {
    const offsets = this.offsets;
    let lo = 0;
    let hi = this.count - 1;
    for (let guess = 0; lo <= hi; guess++) {
      const first = offsets[lo];
      const last = offsets[hi];
      if (offset < first || offset > last) return -1;
      const mid =
        guess < 4 && last > first
          ? lo + Math.floor(((offset - first) * (hi - lo)) / (last - first))
          : (lo + hi) >>> 1;
      const v = offsets[mid];
      if (v === offset) return mid;
      if (v < offset) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  /** Drops entries at or after `offset`; returns how many remain. */
  truncateFrom(offset: number): number {
    while (this.count > 0 && this.offsets[this.count - 1] >= offset) this.count--;
    return this.count;
  }

  get lastOffset(): number {
    return this.count > 0 ? this.offsets[this.count - 1] : -1;
  }

  entry(i: number): { offset: number; crc: number } {
    return { offset: this.offsets[i], crc: this.crcs[i] };
  }
}

export type SidecarRead =
  | { status: 'missing' }
  | { status: 'bad'; problem: string }
  | { status: 'ok'; sums: BlockChecksums; tornBytes: number; unordered: number | null };

export function checksumPath(root: string, blockNo: number): string {
  return path.join(root, CHECKSUM_DIR, checksumFileName(blockNo));
}

/** Reads a sidecar file without changing anything (engine and tools alike). */
export function readSidecar(root: string, blockNo: number): SidecarRead {
  let data: Buffer;
  try {
    data = fs.readFileSync(checksumPath(root, blockNo));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { status: 'missing' };
    return { status: 'bad', problem: (err as Error).message };
  }
  const h = decodeChecksumHeader(data, blockNo);
  if (!h.ok) return { status: 'bad', problem: h.problem };
  const n = checksumEntryCount(data.length);
  const sums = new BlockChecksums(blockNo, h.value.sealedAt, Math.max(16, n));
  let unordered: number | null = null;
  for (let i = 0, off = CHECKSUM_HEADER_SIZE; i < n; i++, off += CHECKSUM_ENTRY_SIZE) {
    const offset = data.readUInt32BE(off);
    if (offset <= sums.lastOffset && unordered === null) unordered = offset;
    sums.add(offset, data.readUInt32BE(off + 4));
  }
  return {
    status: 'ok',
    sums,
    tornBytes: data.length - CHECKSUM_HEADER_SIZE - n * CHECKSUM_ENTRY_SIZE,
    unordered,
  };
}

function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

const MAX_CACHED = 16;

/**
 * Checked reads and the recheck window. Every read of a record that has a checksum is compared with
 * it, except that a record a read verified within the last 30 to 60 s (checksum_recheck_s, 30 by
 * default: one to two epochs) is trusted without computing its CRC again. What that keeps of "a read never returns wrong data from disk": the bytes came from
 * disk and matched at that earlier read; reads since return the kernel's page-cache copy of the same
 * bytes. They could differ only if, inside the window, the kernel dropped the page and read it again
 * from a disk whose content had silently changed, or another process wrote into the block file (the
 * folder lock keeps other ims processes out; nothing in ims rewrites a record in place). A record
 * read for the first time, or again after the window, is always checked. A mark holds the epoch (of
 * `recheckEpochMs`) of its check and counts in that epoch and the next. Marks live with a block's
 * checksums in memory, so they start empty at start-up and whenever a sealed block's sidecar is loaded
 * again. `recheckEpochMs = 0` checks every read.
 */
export const RECHECK_EPOCH_MS = 30_000;

export class ChecksumSidecars {
  /**
   * The epoch when the folder's owner gives none (tools, tests, benchmarks); the server passes
   * checksum_recheck_s. 0 turns the recheck window off (every read is checked). Read at construction.
   */
  static recheckEpochMs = RECHECK_EPOCH_MS;
  readonly dir: string;
  /** The write block's sidecar: open for appends. */
  private writeSums: BlockChecksums | null = null;
  private writeFdNo = -1;
  /** Entries of `writeSums` already in the file. */
  private entriesInFile = 0;
  private staged = Buffer.allocUnsafe(64 * 1024);
  private stagedBytes = 0;
  private readonly cache = new Map<number, BlockChecksums | null>();
  private readonly warned = new Set<number>();
  /** The recheck epoch (1..255); a mark equal to it or to the one before means "verified recently". */
  private epoch = 1;
  private ticker: NodeJS.Timeout | null = null;
  private readonly window: boolean;

  constructor(
    readonly root: string,
    private readonly logger: StorageLogger,
    /** The epoch of the recheck window (checksum_recheck_s × 1000); 0 checks every read. */
    recheckEpochMs?: number,
  ) {
    this.dir = path.join(root, CHECKSUM_DIR);
    const ms = recheckEpochMs ?? ChecksumSidecars.recheckEpochMs;
    this.window = ms > 0;
    if (this.window) {
      this.ticker = setInterval(() => this.nextEpoch(), ms);
      this.ticker.unref();
    }
  }

  private nextEpoch(): void {
    if (this.epoch < 255) {
      this.epoch++;
      return;
    }
    // The 8-bit epochs wrap: forget every mark, so an old one can never pass for a recent one.
    this.epoch = 1;
    this.writeSums?.clearMarks();
    for (const sums of this.cache.values()) sums?.clearMarks();
  }

  /** True when a read verified entry `i` of `sums` within the recheck window. */
  recentlyVerified(sums: BlockChecksums, i: number): boolean {
    if (!this.window) return false;
    const m = sums.markAt(i);
    return m !== 0 && (m === this.epoch || m === this.epoch - 1);
  }

  markVerified(sums: BlockChecksums, i: number): void {
    if (this.window) sums.setMark(i, this.epoch);
  }

  /** Stops the recheck clock (the folder is closed). */
  stop(): void {
    if (this.ticker) clearInterval(this.ticker);
    this.ticker = null;
  }

  get writeFd(): number {
    return this.writeFdNo;
  }

  /**
   * Opens (or creates) the write block's sidecar, dropping entries at or past `blockEnd` (records a
   * crash kept out of the block) and a torn last entry. Returns the checksums now on file.
   */
  openWrite(blockNo: number, blockEnd: number): BlockChecksums {
    fs.mkdirSync(this.dir, { recursive: true });
    const file = checksumPath(this.root, blockNo);
    const read = readSidecar(this.root, blockNo);
    let sums: BlockChecksums;
    if (read.status === 'ok' && read.unordered === null) {
      sums = read.sums;
      if (read.sums.sealedAt !== 0) sums.sealedAt = 0;
    } else {
      if (read.status !== 'missing') {
        const why = read.status === 'bad' ? read.problem : `entry offsets out of order at ${read.unordered}`;
        const aside = `${file}.bad-${Date.now()}`;
        this.logger.warn(`${file}: ${why}; kept aside as ${path.basename(aside)}, starting a new one`);
        fs.renameSync(file, aside);
      }
      const fd = fs.openSync(file, 'w', 0o644);
      try {
        fs.writeSync(fd, encodeChecksumHeader({ blockNo, sealedAt: 0 }), 0, CHECKSUM_HEADER_SIZE, 0);
        fs.fdatasyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      fsyncDir(this.dir);
      sums = new BlockChecksums(blockNo, 0);
    }
    const fd = fs.openSync(file, 'r+');
    const before = sums.count;
    sums.truncateFrom(blockEnd);
    const size = fs.fstatSync(fd).size;
    const want = CHECKSUM_HEADER_SIZE + sums.count * CHECKSUM_ENTRY_SIZE;
    if (size !== want) {
      fs.ftruncateSync(fd, want);
      fs.fdatasyncSync(fd);
      if (before !== sums.count) {
        this.logger.warn(
          `${file}: dropped ${before - sums.count} checksums of records past the end of the block (${blockEnd})`,
        );
      }
    }
    this.writeSums = sums;
    this.writeFdNo = fd;
    this.entriesInFile = sums.count;
    this.stagedBytes = 0;
    this.cache.delete(blockNo);
    return sums;
  }

  /** Adds the checksum of a record about to be written to the write block. */
  stage(offset: number, crc: number): void {
    const sums = this.writeSums!;
    sums.add(offset, crc);
    if (this.stagedBytes + CHECKSUM_ENTRY_SIZE > this.staged.length) {
      const bigger = Buffer.allocUnsafe(this.staged.length * 2);
      this.staged.copy(bigger, 0, 0, this.stagedBytes);
      this.staged = bigger;
    }
    this.staged.writeUInt32BE(offset, this.stagedBytes);
    this.staged.writeUInt32BE(crc, this.stagedBytes + 4);
    this.stagedBytes += CHECKSUM_ENTRY_SIZE;
  }

  /** Writes the staged entries to the sidecar (after the block write of the same records). */
  writeStaged(): void {
    if (this.stagedBytes === 0) return;
    const n = this.stagedBytes;
    const at = CHECKSUM_HEADER_SIZE + this.entriesInFile * CHECKSUM_ENTRY_SIZE;
    let done = 0;
    while (done < n) done += fs.writeSync(this.writeFdNo, this.staged, done, n - done, at + done);
    this.stagedBytes = 0;
    this.entriesInFile += n / CHECKSUM_ENTRY_SIZE;
  }

  /** Forgets staged entries and entries at or past `offset` (a block write that failed and was undone). */
  undo(offset: number): void {
    this.stagedBytes = 0;
    const sums = this.writeSums;
    if (!sums) return;
    sums.truncateFrom(offset);
    if (this.entriesInFile > sums.count) {
      fs.ftruncateSync(this.writeFdNo, CHECKSUM_HEADER_SIZE + sums.count * CHECKSUM_ENTRY_SIZE);
      this.entriesInFile = sums.count;
    }
  }

  /** Cuts the write block's checksums back to `offset` (a cut of the block), durably. */
  truncateWrite(offset: number): void {
    this.undo(offset);
    fs.fdatasyncSync(this.writeFdNo);
  }

  /**
   * Seals the write block's sidecar: records the sealing time in its header and fdatasyncs it. Returns
   * the handle, which the caller closes once no fdatasync of it can still be running.
   */
  seal(sealedAt: number): number {
    const sums = this.writeSums!;
    this.writeStaged();
    fs.writeSync(
      this.writeFdNo,
      encodeChecksumHeader({ blockNo: sums.blockNo, sealedAt }),
      0,
      CHECKSUM_HEADER_SIZE,
      0,
    );
    fs.fdatasyncSync(this.writeFdNo);
    sums.sealedAt = sealedAt;
    this.remember(sums.blockNo, sums);
    const fd = this.writeFdNo;
    this.writeSums = null;
    this.writeFdNo = -1;
    return fd;
  }

  /** Closes the write sidecar without sealing it (shutdown, or a cut that moves the write block). */
  closeWrite(): number {
    const fd = this.writeFdNo;
    this.writeSums = null;
    this.writeFdNo = -1;
    return fd;
  }

  private remember(blockNo: number, sums: BlockChecksums | null): void {
    this.cache.delete(blockNo);
    this.cache.set(blockNo, sums);
    if (this.cache.size > MAX_CACHED) this.cache.delete(this.cache.keys().next().value as number);
  }

  /** Checksums of a block, or null when it has no usable sidecar (Go-written). */
  sumsOf(blockNo: number): BlockChecksums | null {
    if (this.writeSums && this.writeSums.blockNo === blockNo) return this.writeSums;
    const cached = this.cache.get(blockNo);
    if (cached !== undefined) return cached;
    const read = readSidecar(this.root, blockNo);
    let sums: BlockChecksums | null = null;
    if (read.status === 'ok') sums = read.sums;
    else if (read.status === 'bad' && !this.warned.has(blockNo)) {
      this.warned.add(blockNo);
      this.logger.warn(
        `${checksumPath(this.root, blockNo)}: ${read.problem}; records of ${blockNo} are read unchecked`,
      );
    }
    this.remember(blockNo, sums);
    return sums;
  }

  /** The expected checksum of the record at `offset` of `blockNo`, or -1 when none is kept. */
  expected(blockNo: number, offset: number): number {
    const sums = this.sumsOf(blockNo);
    return sums ? sums.find(offset) : -1;
  }

  /** Deletes a block's sidecar (retention). */
  remove(blockNo: number): void {
    this.cache.delete(blockNo);
    fs.rmSync(checksumPath(this.root, blockNo), { force: true });
  }

  /** Deletes sidecars of blocks below `firstBlock`: left by a crash during a retention pass. */
  removeBelow(firstBlock: number): void {
    let names: string[];
    try {
      names = fs.readdirSync(this.dir);
    } catch {
      return;
    }
    for (const name of names) {
      const m = /^message_(\d+)\.crc$/.exec(name);
      if (m && Number(m[1]) < firstBlock) {
        fs.rmSync(path.join(this.dir, name), { force: true });
        this.logger.log(`removed ${CHECKSUM_DIR}/${name}: its block was deleted by retention`);
      }
    }
  }

  /** Renames a block's sidecar beside itself (a block moved aside); returns the new name or null. */
  moveAside(blockNo: number, suffix: string): string | null {
    this.cache.delete(blockNo);
    const from = checksumPath(this.root, blockNo);
    if (!fs.existsSync(from)) return null;
    let to = `${from}.${suffix}`;
    for (let i = 2; fs.existsSync(to); i++) to = `${from}.${suffix}.${i}`;
    fs.renameSync(from, to);
    fsyncDir(this.dir);
    return to;
  }

  forget(blockNo: number): void {
    this.cache.delete(blockNo);
  }
}

/** Writes a whole sidecar atomically (temp, fsync, rename, fsync of the folder): `repair --checksums`. */
export function writeSidecarFile(root: string, sums: BlockChecksums): string {
  const dir = path.join(root, CHECKSUM_DIR);
  fs.mkdirSync(dir, { recursive: true });
  const file = checksumPath(root, sums.blockNo);
  const buf = Buffer.alloc(CHECKSUM_HEADER_SIZE + sums.count * CHECKSUM_ENTRY_SIZE);
  encodeChecksumHeader({ blockNo: sums.blockNo, sealedAt: sums.sealedAt }).copy(buf, 0);
  for (let i = 0; i < sums.count; i++) {
    const { offset, crc } = sums.entry(i);
    buf.writeUInt32BE(offset, CHECKSUM_HEADER_SIZE + i * CHECKSUM_ENTRY_SIZE);
    buf.writeUInt32BE(crc, CHECKSUM_HEADER_SIZE + i * CHECKSUM_ENTRY_SIZE + 4);
  }
  const tmp = `${file}_t`;
  fs.writeFileSync(tmp, buf, { flush: true });
  fs.renameSync(tmp, file);
  fsyncDir(dir);
  return file;
}
