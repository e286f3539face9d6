/**
 * The block files of a data folder: `message_0`, `message_1`, ... Appends go to the newest block (the
 * write block) through a staging buffer and one write per commit; reads go through a bounded set of
 * open read handles. Durability is group commit: callers wait for the fdatasync that covers their id.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BLOCK_HEADER_SIZE, BLOCK_SIZE, MAGIC } from '../format/constants.js';
import { blockHeaderProblem, decodeRecord, encodeBlockHeader, type RawMessage } from '../format/record.js';
import {
  CorruptRecordError,
  StorageInputError,
  StorageOpenError,
  StorageWriteError,
} from './storage-errors.js';
import type { StorageLogger } from './storage-logger.js';
import { BlockAddressing, blockFileName } from '../format/block-addressing.js';
import { storageProbes } from '../metrics/probes.js';
import { recordChecksum } from '../format/checksum-file.js';
import { ChecksumSidecars } from './record-checksums.js';
import { checksumMismatch, nextWholeRecord, scanBlock, type BlockScan } from './block-reader.js';

const BLOCK_NAME = /^message_(\d+)$/;
/**
 * Copies of bytes taken out of the log: a torn tail, a slave's diverged tail or blocks, and what
 * `ims repair --damaged cut|fill` cut or overwrote.
 */
const KEPT_ASIDE = /^message_\d+\.(torn|diverged|damaged|filled)\b/;
const READ_AHEAD = 4096;

export interface BlockFilesOptions {
  root: string;
  /** Bytes a block may hold. Only tests change it; ids depend on it, so a folder keeps one size. */
  blockSize?: number;
  /** Most read handles kept open at once (Go: 128). */
  maxOpenReadFiles?: number;
  logger: StorageLogger;
  /** The checked-read recheck window's epoch, ms (checksum_recheck_s; 0: every read checked). */
  checksumRecheckMs?: number;
}

export { blockFileName };

/** Block numbers present in `root`, ascending. Files that only look like blocks are reported, not used. */
export function listBlocks(root: string, logger?: StorageLogger): number[] {
  const blocks: number[] = [];
  for (const name of fs.readdirSync(root)) {
    const m = BLOCK_NAME.exec(name);
    if (m) blocks.push(Number(m[1]));
    else if (KEPT_ASIDE.test(name)) logger?.warn(`ignoring ${name}: bytes cut from the log and kept aside`);
    else if (name.startsWith('message_')) logger?.warn(`ignoring ${name}: not a block file name (message_N)`);
  }
  return blocks.sort((a, b) => a - b);
}

/** `base`, or `base.2`, `base.3`, ... : the first name not taken, so that a copy never replaces another. */
function freeName(base: string): string {
  if (!fs.existsSync(base)) return base;
  for (let i = 2; ; i++) if (!fs.existsSync(`${base}.${i}`)) return `${base}.${i}`;
}

/** fsync of a file by name; returns its size. */
function syncFile(file: string): number {
  const fd = fs.openSync(file, 'r');
  try {
    fs.fsyncSync(fd);
    return fs.fstatSync(fd).size;
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Copies bytes `offset`..`end` of the block file `file` (open as `fd`) to `FILE.KIND-OFFSET` beside it
 * (a new name, never over an older copy), and makes the copy and its name durable. Returns its path.
 * Done before any of those bytes is cut or overwritten, so a crash never loses them.
 */
export function copyAside(file: string, fd: number, offset: number, end: number, kind: string): string {
  const savedTo = freeName(`${file}.${kind}-${offset}`);
  const out = fs.openSync(savedTo, 'wx', 0o644);
  try {
    const chunk = Buffer.allocUnsafe(Math.max(1, Math.min(end - offset, 1 << 20)));
    for (let pos = offset; pos < end;) {
      const n = fs.readSync(fd, chunk, 0, Math.min(chunk.length, end - pos), pos);
      if (n <= 0) throw new Error(`${file}: unexpected end of file at offset ${pos}`);
      let done = 0;
      while (done < n) done += fs.writeSync(out, chunk, done, n - done, pos - offset + done);
      pos += n;
    }
    fs.fsyncSync(out);
  } finally {
    fs.closeSync(out);
  }
  fsyncDirectory(path.dirname(file));
  return savedTo;
}

export function fsyncDirectory(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Runs a staged write on `files`: commits what `stage` staged, or drops it when anything throws. */
export function writeStaged<T>(files: BlockFiles, stage: () => T): T {
  try {
    const result = stage();
    files.commit();
    return result;
  } catch (err) {
    files.discardStaged();
    throw err;
  }
}

export { checksumMismatch } from './block-reader.js';

interface DurableWaiter {
  id: number;
  resolve: () => void;
  reject: (err: Error) => void;
}

export class BlockFiles extends BlockAddressing {
  private readonly maxOpenReadFiles: number;
  private readonly logger: StorageLogger;

  private writeBlockNo = 0;
  /** The oldest block present: retention deletes blocks from the front, so the log may not start at 0. */
  private firstBlockNo = 0;
  private writeFd = -1;
  /** Bytes of the write block that are written (committed to the file). */
  private writeSize = 0;
  private readonly readFds = new Map<number, number>();
  private readonly sealedSizes = new Map<number, number>();

  /** Staged bytes of the current commit, all destined for the write block at `writeSize`. */
  private staging = Buffer.allocUnsafe(1 << 20);
  private stagedBytes = 0;

  /** Every id below this is on disk (fdatasync returned). */
  private durableEnd = 0;
  private syncInFlight: Promise<void> | null = null;
  private waiters: DurableWaiter[] = [];
  private syncFailure: Error | null = null;
  /** Write handles of blocks rolled over while an fdatasync of them may still be running. */
  private retiredFds: number[] = [];
  private lastSyncAt = 0;
  /** Bytes appended to block files since open (ims_bytes_written_total reads it). */
  bytesWritten = 0;
  private readonly readScratch = Buffer.allocUnsafe(READ_AHEAD);
  /** CRC32 of every record written here, beside the blocks (`checksums/message_N.crc`). */
  readonly sums: ChecksumSidecars;

  constructor(options: BlockFilesOptions) {
    super(options.root, options.blockSize ?? BLOCK_SIZE);
    this.maxOpenReadFiles = options.maxOpenReadFiles ?? 128;
    this.logger = options.logger;
    this.sums = new ChecksumSidecars(options.root, options.logger, options.checksumRecheckMs);
    if (this.blockSize < BLOCK_HEADER_SIZE + 1024)
      throw new Error(`block size ${this.blockSize} is too small`);
  }

  /** The id the next appended record gets. */
  get nextId(): number {
    return this.writeBlockNo * this.blockSize + this.writeSize + this.stagedBytes;
  }

  /** Ids below this are durable. */
  get durableId(): number {
    return this.durableEnd;
  }

  get writeBlock(): number {
    return this.writeBlockNo;
  }

  get writeBlockSize(): number {
    return this.writeSize;
  }

  get dirty(): boolean {
    return this.durableEnd < this.nextId;
  }

  /** Nothing staged, no fdatasync running or awaited: the files may be cut back. */
  get idle(): boolean {
    return this.stagedBytes === 0 && !this.syncInFlight && this.waiters.length === 0;
  }

  get failed(): Error | null {
    return this.syncFailure;
  }

  get lastSyncTime(): number {
    return this.lastSyncAt;
  }

  /**
   * Opens the folder: creates `message_0` when there is no block, checks every block's header and every
   * older block's tail (it must end in MAGIC, as Go requires), and opens the newest block for writing.
   * The write block's records are not scanned here: the caller scans them (recovering a torn tail).
   */
  open(): { blocks: number[] } {
    fs.mkdirSync(this.root, { recursive: true });
    let blocks = listBlocks(this.root, this.logger);
    if (blocks.length === 0) {
      this.createBlock(0);
      blocks = [0];
    }
    const last = blocks[blocks.length - 1];
    for (const b of blocks) {
      if (b !== last) this.checkSealedBlock(b);
    }
    this.openWriteBlock(last);
    this.firstBlockNo = blocks[0];
    this.durableEnd = this.nextId;
    this.sums.removeBelow(this.firstBlockNo);
    return { blocks };
  }

  get firstBlock(): number {
    return this.firstBlockNo;
  }

  /** The id of the first record the log can hold: older ids lie in blocks retention deleted. */
  get firstId(): number {
    return this.idOf(this.firstBlockNo, BLOCK_HEADER_SIZE);
  }

  /** When a sealed block was sealed (ms): from its checksum sidecar, else its file's mtime (Go blocks). */
  sealedAt(blockNo: number): number {
    const sums = this.sums.sumsOf(blockNo);
    if (sums && sums.sealedAt > 0) return sums.sealedAt;
    return Math.floor(fs.statSync(this.filePath(blockNo)).mtimeMs);
  }

  /**
   * Deletes every block (the write block too) and starts an empty log at block `blockNo`, past them all:
   * a slave behind its master's retention. Oldest first, so a crash leaves a shorter log that opens.
   */
  restartAt(blockNo: number): { deletedBlocks: number; bytes: number } {
    this.assertWritable();
    if (!this.idle)
      throw new StorageInputError('cannot restart the log while a write or an fsync is in progress');
    if (blockNo <= this.writeBlockNo) {
      throw new StorageInputError(
        `cannot restart the log at ${blockFileName(blockNo)}: it is not past the write block`,
      );
    }
    let deletedBlocks = 0;
    let bytes = 0;
    while (this.firstBlockNo < this.writeBlockNo) {
      bytes += this.deleteFirstBlock();
      deletedBlocks++;
    }
    bytes += this.writeSize;
    fs.closeSync(this.writeFd);
    const sumsFd = this.sums.closeWrite();
    if (sumsFd >= 0) fs.closeSync(sumsFd);
    this.writeFd = -1;
    fs.rmSync(this.filePath(this.writeBlockNo), { force: true });
    fsyncDirectory(this.root);
    this.sums.remove(this.writeBlockNo);
    deletedBlocks++;
    this.createBlock(blockNo);
    this.openWriteBlock(blockNo);
    this.firstBlockNo = blockNo;
    this.durableEnd = this.nextId;
    return { deletedBlocks, bytes };
  }

  /**
   * Deletes the oldest block (never the write block) and its sidecar: retention. The block goes first
   * and the folder is fsynced, so a crash leaves at worst a sidecar without its block, removed at the
   * next open. Returns the bytes freed.
   */
  deleteFirstBlock(): number {
    const b = this.firstBlockNo;
    if (b >= this.writeBlockNo) throw new StorageInputError('the write block is never deleted');
    const size = this.sealedBlockSize(b);
    this.forgetBlock(b);
    fs.rmSync(this.filePath(b), { force: true });
    fsyncDirectory(this.root);
    this.sums.remove(b);
    this.firstBlockNo = b + 1;
    // A block missing in the middle (damage) is skipped too: the log starts at the next one present.
    while (this.firstBlockNo < this.writeBlockNo && !fs.existsSync(this.filePath(this.firstBlockNo)))
      this.firstBlockNo++;
    return size;
  }

  private checkSealedBlock(blockNo: number): void {
    const file = this.filePath(blockNo);
    const fd = fs.openSync(file, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      const header = Buffer.alloc(BLOCK_HEADER_SIZE);
      fs.readSync(fd, header, 0, BLOCK_HEADER_SIZE, 0);
      const problem = blockHeaderProblem(header.subarray(0, Math.min(size, BLOCK_HEADER_SIZE)));
      if (problem) throw new StorageOpenError(`${file}: ${problem}`);
      if (size > this.blockSize) {
        throw new StorageOpenError(`${file}: size ${size} exceeds the block size ${this.blockSize}`);
      }
      if (size === BLOCK_HEADER_SIZE) return;
      const tail = Buffer.alloc(4);
      fs.readSync(fd, tail, 0, 4, size - 4);
      if (tail.readUInt32BE(0) !== MAGIC) {
        throw new StorageOpenError(
          `${file}: does not end with a complete record (size ${size}); only the newest block may have a ` +
            `torn tail. Run 'ims verify' on the folder to find the damage.`,
        );
      }
    } finally {
      fs.closeSync(fd);
    }
  }

  private createBlock(blockNo: number): void {
    const file = this.filePath(blockNo);
    const fd = fs.openSync(file, 'wx', 0o644);
    try {
      fs.writeSync(fd, encodeBlockHeader(), 0, BLOCK_HEADER_SIZE, 0);
      fs.fdatasyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fsyncDirectory(this.root);
  }

  private openWriteBlock(blockNo: number): void {
    const file = this.filePath(blockNo);
    const fd = fs.openSync(file, 'r+');
    let size = fs.fstatSync(fd).size;
    if (size < BLOCK_HEADER_SIZE) {
      // A crash while creating the block: Go truncates and rewrites the header too.
      this.logger.warn(`${file}: header is incomplete (${size} bytes); rewriting it`);
      fs.ftruncateSync(fd, 0);
      fs.writeSync(fd, encodeBlockHeader(), 0, BLOCK_HEADER_SIZE, 0);
      fs.fdatasyncSync(fd);
      size = BLOCK_HEADER_SIZE;
    } else {
      const header = Buffer.alloc(BLOCK_HEADER_SIZE);
      fs.readSync(fd, header, 0, BLOCK_HEADER_SIZE, 0);
      const problem = blockHeaderProblem(header);
      if (problem) {
        fs.closeSync(fd);
        throw new StorageOpenError(`${file}: ${problem}`);
      }
    }
    if (size > this.blockSize) {
      fs.closeSync(fd);
      throw new StorageOpenError(`${file}: size ${size} exceeds the block size ${this.blockSize}`);
    }
    this.writeFd = fd;
    this.writeBlockNo = blockNo;
    this.writeSize = size;
    this.sums.openWrite(blockNo, size);
  }

  /**
   * Gives the write block's records that have no checksum yet one computed from the disk: records a
   * crash left written but whose checksums were not (never acknowledged, but whole), and the records of
   * a block Go was writing. Called once recovery has cut any torn tail. Returns how many were added.
   */
  adoptUncheckedRecords(): number {
    const sums = this.sums.sumsOf(this.writeBlockNo)!;
    let from = BLOCK_HEADER_SIZE;
    if (sums.count > 0) {
      const last = sums.lastOffset;
      const head = Buffer.alloc(8);
      fs.readSync(this.writeFd, head, 0, 8, last);
      from = last + 20 + head.readInt32BE(4);
    }
    if (from >= this.writeSize) return 0;
    let added = 0;
    this.scan(
      this.writeBlockNo,
      from,
      (id, _msg, bytes) => {
        this.sums.stage(this.offsetOf(id), recordChecksum(bytes, 0, bytes.length));
        added++;
      },
      this.writeSize,
    );
    this.sums.writeStaged();
    fs.fdatasyncSync(this.sums.writeFd);
    if (added > 0) {
      this.logger.log(
        `${blockFileName(this.writeBlockNo)}: computed checksums of ${added} records that had none ` +
          `(from offset ${from}; written by Go or before a crash)`,
      );
    }
    return added;
  }

  /**
   * Cuts the write block back to `offset` (a torn tail found by the caller's scan). The bytes cut are
   * first copied to `message_N.torn-OFFSET` beside it, so nothing is destroyed that an operator might want.
   */
  truncateWriteBlock(offset: number): { cut: number; savedTo: string | null } {
    const cut = this.writeSize - offset;
    if (cut <= 0) return { cut: 0, savedTo: null };
    const savedTo = this.cutTail(this.writeFd, this.writeBlockNo, offset, this.writeSize, 'torn');
    this.sums.truncateWrite(offset);
    this.writeSize = offset;
    this.durableEnd = this.nextId;
    return { cut, savedTo };
  }

  /**
   * Copies bytes `offset`..`size` of block `blockNo` (open as `fd`) to `message_N.KIND-OFFSET` (a new
   * name, never over an older copy), makes the copy and its name durable, and only then truncates the
   * block and fdatasyncs it: a crash leaves the bytes in the block, in the copy, or in both, never lost.
   */
  private cutTail(fd: number, blockNo: number, offset: number, size: number, kind: string): string {
    const savedTo = copyAside(this.filePath(blockNo), fd, offset, size, kind);
    fs.ftruncateSync(fd, offset);
    fs.fdatasyncSync(fd);
    return savedTo;
  }

  /**
   * Cuts the log back to `offset` in block `blockNo`, a record boundary the caller has checked (a slave
   * whose log diverged from its master's). Nothing is destroyed: later blocks are renamed to
   * `message_M.diverged` and the cut tail of `blockNo` is copied to `message_N.diverged-OFFSET`. The
   * caller makes sure nothing is staged, syncing or waiting. Returns the files kept aside and the number
   * of record bytes cut (block headers not counted).
   *
   * Order, so that a crash at any point leaves a folder that opens as a whole log ending somewhere
   * between the old end and the target, with no gap:
   *   1. later blocks, newest first: fsync, rename, fsync the folder. The newest remaining block is then
   *      always one that was complete (older blocks end in a whole record), and no block is missing
   *      below it.
   *   2. the tail of `blockNo`: copy made durable before the block is truncated (`cutTail`).
   *   3. only then the in-memory state: `blockNo` becomes the write block, durable up to the cut.
   * On a failure midway the files refuse further writes (a restart opens the folder consistently).
   */
  cutBack(blockNo: number, offset: number): { keptAside: string[]; cutBytes: number } {
    this.assertWritable();
    if (!this.idle) {
      throw new StorageInputError(
        'cannot cut the log while a write or an fsync is in progress; await store.flush() first',
      );
    }
    if (blockNo > this.writeBlockNo || offset < BLOCK_HEADER_SIZE || offset > this.blockSize) {
      throw new StorageInputError(`cannot cut the log at ${blockFileName(blockNo)} offset ${offset}`);
    }
    const keptAside: string[] = [];
    let cutBytes = 0;
    const oldWriteFd = this.writeFd;
    let fd = -1;
    try {
      for (let m = this.writeBlockNo; m > blockNo; m--) {
        const file = this.filePath(m);
        this.forgetBlock(m);
        let size: number;
        if (m === this.writeBlockNo) {
          fs.fdatasyncSync(oldWriteFd);
          size = this.writeSize;
        } else {
          try {
            size = syncFile(file);
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // a block already gone
            throw err;
          }
        }
        const to = freeName(`${file}.diverged`);
        fs.renameSync(file, to);
        fsyncDirectory(this.root);
        keptAside.push(to);
        if (m === this.writeBlockNo) fs.closeSync(this.sums.closeWrite());
        this.sums.moveAside(m, 'diverged');
        cutBytes += Math.max(0, size - BLOCK_HEADER_SIZE);
      }
      this.forgetBlock(blockNo);
      fd = blockNo === this.writeBlockNo ? oldWriteFd : fs.openSync(this.filePath(blockNo), 'r+');
      const size = blockNo === this.writeBlockNo ? this.writeSize : fs.fstatSync(fd).size;
      if (offset > size) {
        throw new StorageInputError(
          `${this.describe(this.idOf(blockNo, offset))} is past the end of the block (${size})`,
        );
      }
      if (offset < size) {
        keptAside.push(this.cutTail(fd, blockNo, offset, size, 'diverged'));
        cutBytes += size - offset;
      } else {
        fs.fdatasyncSync(fd);
      }
      if (blockNo === this.writeBlockNo) this.sums.truncateWrite(offset);
      else this.sums.openWrite(blockNo, offset);
    } catch (err) {
      if (fd >= 0 && fd !== oldWriteFd) fs.closeSync(fd);
      if (keptAside.length === 0 && err instanceof StorageInputError) throw err;
      this.fail(
        new StorageWriteError(`cutting the log back to ${this.describe(this.idOf(blockNo, offset))} failed`, {
          cause: err,
        }),
      );
      throw this.syncFailure;
    }
    if (fd !== oldWriteFd) fs.closeSync(oldWriteFd);
    this.writeFd = fd;
    this.writeBlockNo = blockNo;
    this.writeSize = offset;
    this.durableEnd = this.nextId;
    this.lastSyncAt = Date.now();
    return { keptAside, cutBytes };
  }

  /** Drops the cached read handle and size of a block that is about to change. */
  private forgetBlock(blockNo: number): void {
    const fd = this.readFds.get(blockNo);
    if (fd !== undefined) {
      this.readFds.delete(blockNo);
      fs.closeSync(fd);
    }
    this.sealedSizes.delete(blockNo);
  }

  // ---- appends -------------------------------------------------------------------------------------

  /**
   * Reserves room for a record of `size` bytes and returns its id; the caller then writes the record
   * into `stagingBuffer` at `stagingOffsetOf(id)`. A record never straddles two blocks: when it would
   * pass the block size, the staged bytes are committed, the block is fsynced and the next one begins.
   */
  reserve(size: number): number {
    this.assertWritable();
    if (this.writeSize + this.stagedBytes + size > this.blockSize) {
      if (BLOCK_HEADER_SIZE + size > this.blockSize) {
        throw new StorageWriteError(`a record of ${size} bytes cannot fit in a block of ${this.blockSize}`);
      }
      this.commit();
      this.rollWriteBlock();
    }
    if (this.stagedBytes + size > this.staging.length) {
      const bigger = Buffer.allocUnsafe(Math.max(this.staging.length * 2, this.stagedBytes + size));
      this.staging.copy(bigger, 0, 0, this.stagedBytes);
      this.staging = bigger;
    }
    const id = this.nextId;
    this.stagedBytes += size;
    return id;
  }

  get stagingBuffer(): Buffer {
    return this.staging;
  }

  stagingOffsetOf(id: number): number {
    return id - (this.writeBlockNo * this.blockSize + this.writeSize);
  }

  /** Writes the staged bytes to the write block. On failure nothing of them stays in the file. */
  commit(): void {
    if (this.stagedBytes === 0) return;
    const n = this.stagedBytes;
    this.stagedBytes = 0;
    const staging = this.staging;
    // The staged bytes are whole records: checksum each one (the sidecar entry goes with the block write).
    for (let pos = 0; pos < n;) {
      const size = 20 + staging.readInt32BE(pos + 4);
      this.sums.stage(this.writeSize + pos, recordChecksum(staging, pos, pos + size));
      pos += size;
    }
    try {
      let done = 0;
      while (done < n)
        done += fs.writeSync(this.writeFd, this.staging, done, n - done, this.writeSize + done);
      this.sums.writeStaged();
    } catch (err) {
      try {
        fs.ftruncateSync(this.writeFd, this.writeSize);
        this.sums.undo(this.writeSize);
      } catch (truncErr) {
        this.fail(
          new StorageWriteError(`cannot undo a failed write in ${this.describe(this.nextId)}`, {
            cause: truncErr,
          }),
        );
      }
      throw new StorageWriteError(
        `write to ${this.describe(this.nextId)} failed: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    this.writeSize += n;
    this.bytesWritten += n;
  }

  /** Drops staged bytes that were not committed (the caller's save failed before commit). */
  discardStaged(): void {
    this.stagedBytes = 0;
  }

  private rollWriteBlock(): void {
    const old = this.writeFd;
    try {
      fs.fdatasyncSync(old);
    } catch (err) {
      this.fail(
        new StorageWriteError(`fdatasync of ${this.describe(this.nextId - 1)} failed`, { cause: err }),
      );
      throw this.syncFailure;
    }
    this.retiredFds.push(old);
    try {
      // The sealing time goes into the sidecar's header: retention reads a block's age from it.
      this.retiredFds.push(this.sums.seal(Date.now()));
    } catch (err) {
      this.fail(
        new StorageWriteError(`sealing the checksums of ${this.describe(this.nextId - 1)} failed`, {
          cause: err,
        }),
      );
      throw this.syncFailure;
    }
    this.closeRetiredIfIdle();
    const next = this.writeBlockNo + 1;
    this.createBlock(next);
    this.openWriteBlock(next);
    this.logger.log(`rolled to ${blockFileName(next)}`);
  }

  private assertWritable(): void {
    if (this.syncFailure) {
      throw new StorageWriteError(`storage refuses writes after a failed fsync: ${this.syncFailure.message}`);
    }
  }

  private fail(err: Error): void {
    if (!this.syncFailure) {
      this.syncFailure = err;
      const cause =
        err.cause instanceof Error ? String(err.cause) : err.cause ? JSON.stringify(err.cause) : '';
      this.logger.error(`storage failed closed: ${err.message}${cause ? ` (${cause})` : ''}`);
    }
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.reject(err);
  }

  // ---- durability ----------------------------------------------------------------------------------

  /** Resolves once every byte before `id` is on disk; one fdatasync serves every waiter it covers. */
  whenDurable(id: number): Promise<void> {
    if (this.syncFailure) return Promise.reject(this.syncFailure);
    if (id <= this.durableEnd) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.waiters.push({ id, resolve, reject });
      if (!this.syncInFlight) this.syncInFlight = this.syncLoop();
    });
  }

  /** fdatasync the write block if anything was written since the last one. */
  async flush(): Promise<void> {
    if (this.syncFailure) throw this.syncFailure;
    if (this.dirty) await this.whenDurable(this.nextId);
    else if (this.syncInFlight) await this.syncInFlight;
  }

  private async syncLoop(): Promise<void> {
    try {
      while (this.waiters.length > 0 && !this.syncFailure) {
        this.commit();
        const target = this.nextId;
        const fd = this.writeFd;
        const started = performance.now();
        const sumsFd = this.sums.writeFd;
        // Earlier blocks were fdatasynced when they were rolled over, so syncing the write block (and its
        // checksums, so that an acknowledged record always has its checksum on disk) suffices.
        const datasync = (f: number) =>
          new Promise<void>((resolve, reject) => fs.fdatasync(f, (err) => (err ? reject(err) : resolve())));
        await Promise.all([datasync(fd), datasync(sumsFd)]);
        this.lastSyncAt = Date.now();
        if (target > this.durableEnd) this.durableEnd = target;
        const pending: DurableWaiter[] = [];
        for (const w of this.waiters) {
          if (w.id <= this.durableEnd) w.resolve();
          else pending.push(w);
        }
        storageProbes.fsync((performance.now() - started) / 1000, this.waiters.length - pending.length);
        this.waiters = pending;
      }
    } catch (err) {
      storageProbes.fsyncFailed();
      this.fail(
        new StorageWriteError(`fdatasync of ${blockFileName(this.writeBlockNo)} failed`, { cause: err }),
      );
    } finally {
      this.syncInFlight = null;
      this.closeRetiredIfIdle();
    }
  }

  private closeRetiredIfIdle(): void {
    if (this.syncInFlight) return;
    for (const fd of this.retiredFds) fs.closeSync(fd);
    this.retiredFds = [];
  }

  // ---- reads ---------------------------------------------------------------------------------------

  private fdFor(blockNo: number): number | null {
    if (blockNo === this.writeBlockNo) return this.writeFd;
    const cached = this.readFds.get(blockNo);
    if (cached !== undefined) {
      this.readFds.delete(blockNo);
      this.readFds.set(blockNo, cached);
      return cached;
    }
    let fd: number;
    try {
      fd = fs.openSync(this.filePath(blockNo), 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    this.readFds.set(blockNo, fd);
    if (this.readFds.size > this.maxOpenReadFiles) {
      const [oldestBlock, oldestFd] = this.readFds.entries().next().value as [number, number];
      this.readFds.delete(oldestBlock);
      fs.closeSync(oldestFd);
    }
    return fd;
  }

  /** Size in bytes of a block that is not the write block (0 when its file is missing). */
  sealedBlockSize(blockNo: number): number {
    if (blockNo === this.writeBlockNo) return this.writeSize;
    const cached = this.sealedSizes.get(blockNo);
    if (cached !== undefined) return cached;
    let size = 0;
    try {
      size = fs.statSync(this.filePath(blockNo)).size;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    // Sealed blocks never change: remember their sizes.
    if (blockNo < this.writeBlockNo) this.sealedSizes.set(blockNo, size);
    return size;
  }

  /** Number of read handles open now (for tests of the bound). */
  get openReadHandles(): number {
    return this.readFds.size;
  }

  /**
   * Reads the record with id `id`. Throws CorruptRecordError, naming file and offset, for an id that
   * points outside the written log or at bytes that are not a whole record.
   */
  read(id: number): RawMessage {
    const blockNo = this.blockOf(id);
    const offset = this.offsetOf(id);
    const file = blockFileName(blockNo);
    if (!Number.isSafeInteger(id) || id < 0) throw new CorruptRecordError(file, offset, `invalid id ${id}`);
    if (offset < BLOCK_HEADER_SIZE) {
      throw new CorruptRecordError(file, offset, `id ${id} points into the block header`);
    }
    if (id >= this.nextId - this.stagedBytes) {
      throw new CorruptRecordError(file, offset, `id ${id} is past the end of the log (${this.nextId})`);
    }
    const fd = this.fdFor(blockNo);
    if (fd === null) throw new CorruptRecordError(file, offset, 'block file is missing');
    const scratch = this.readScratch;
    let n = fs.readSync(fd, scratch, 0, READ_AHEAD, offset);
    let result = decodeRecord(scratch, 0, n);
    if (result.kind === 'short' && n === READ_AHEAD) {
      const big = Buffer.allocUnsafe(result.need);
      n = fs.readSync(fd, big, 0, result.need, offset);
      result = decodeRecord(big, 0, n);
      if (result.kind === 'ok') {
        this.checkSum(id, big, result.size);
        return result.message;
      }
    }
    if (result.kind === 'ok') {
      this.checkSum(id, scratch, result.size);
      const m = result.message;
      return { ...m, body: Buffer.from(m.body) };
    }
    if (result.kind === 'short')
      throw new CorruptRecordError(file, offset, 'record is cut short by the end of the file');
    throw new CorruptRecordError(file, offset, result.reason);
  }

  /**
   * Reads the records from `id` up to `stop` (both in one block; `stop` a record boundary) with one
   * pread of at most `maxBytes` bytes (at least the first record), each checked as `read` checks it.
   * Returns them in order; fewer than asked when the next one does not fit in `maxBytes`. Bodies are
   * views into one buffer of this read.
   */
  readRun(id: number, stop: number, maxBytes: number): { id: number; msg: RawMessage }[] {
    const committedEnd = this.nextId - this.stagedBytes;
    if (stop > committedEnd) stop = committedEnd;
    if (id >= stop) return [];
    const blockNo = this.blockOf(id);
    const offset = this.offsetOf(id);
    if (this.blockOf(stop - 1) !== blockNo || offset < BLOCK_HEADER_SIZE || !Number.isSafeInteger(id)) {
      return [{ id, msg: this.read(id) }];
    }
    const fd = this.fdFor(blockNo);
    if (fd === null) throw new CorruptRecordError(blockFileName(blockNo), offset, 'block file is missing');
    const want = Math.min(stop - id, Math.max(maxBytes, READ_AHEAD));
    const buf = Buffer.allocUnsafe(want);
    let n = 0;
    while (n < want) {
      const got = fs.readSync(fd, buf, n, want - n, offset + n);
      if (got === 0) break;
      n += got;
    }
    const out: { id: number; msg: RawMessage }[] = [];
    let pos = 0;
    while (pos < n) {
      const r = decodeRecord(buf, pos, n);
      if (r.kind !== 'ok') break;
      const at = id + pos;
      const expected = this.sums.expected(blockNo, offset + pos);
      if (expected !== -1) {
        const got = recordChecksum(buf, pos, pos + r.size);
        if (got !== expected) {
          throw new CorruptRecordError(
            blockFileName(blockNo),
            offset + pos,
            checksumMismatch(at, got, expected),
          );
        }
      }
      out.push({ id: at, msg: r.message });
      pos += r.size;
    }
    // Nothing whole in what was read (a record longer than maxBytes, or bad bytes): read names the problem.
    if (out.length === 0) return [{ id, msg: this.read(id) }];
    return out;
  }

  /** First whole (and checksum-matching) record after `offset` in a block, or null (see block-reader.ts). */
  nextWholeRecord(blockNo: number, offset: number): number | null {
    const fd = fs.openSync(this.filePath(blockNo), 'r');
    try {
      const size = blockNo === this.writeBlockNo ? this.writeSize : fs.fstatSync(fd).size;
      return nextWholeRecord(fd, size, offset, this.sums.sumsOf(blockNo));
    } finally {
      fs.closeSync(fd);
    }
  }

  /**
   * Throws, naming the record, when it has a checksum and its bytes (`buf[0..size)`) disagree. A record
   * verified within the recheck window is trusted (see RECHECK_EPOCH_MS in record-checksums.ts).
   */
  private checkSum(id: number, buf: Buffer, size: number): void {
    const blockNo = this.blockOf(id);
    const sums = this.sums.sumsOf(blockNo);
    if (sums === null) return;
    const offset = this.offsetOf(id);
    const i = sums.indexOf(offset);
    if (i < 0 || this.sums.recentlyVerified(sums, i)) return;
    const want = sums.crcAt(i);
    const got = recordChecksum(buf, 0, size);
    if (got !== want) {
      throw new CorruptRecordError(blockFileName(blockNo), offset, checksumMismatch(id, got, want));
    }
    this.sums.markVerified(sums, i);
  }

  /**
   * Scans the records of a block from `fromOffset` in order, calling `onRecord` for each. Stops at the
   * end of the file (or at `endOffset`, read as if the file ended there) or at the first bytes that are
   * not a whole record; returns where it stopped and why.
   */
  scan(
    blockNo: number,
    fromOffset: number,
    onRecord: (id: number, msg: RawMessage, bytes: Buffer) => void,
    endOffset = Infinity,
  ): BlockScan {
    const fd = fs.openSync(this.filePath(blockNo), 'r');
    try {
      const fileSize = Math.min(
        endOffset,
        blockNo === this.writeBlockNo ? this.writeSize : fs.fstatSync(fd).size,
      );
      const idOf = (offset: number) => this.idOf(blockNo, offset);
      return scanBlock(fd, fileSize, fromOffset, this.sums.sumsOf(blockNo), idOf, (offset, msg, bytes) =>
        onRecord(idOf(offset), msg, bytes),
      );
    } finally {
      fs.closeSync(fd);
    }
  }

  /** Writes everything staged, waits for it to be durable, and closes every handle. */
  async close(): Promise<void> {
    if (this.writeFd < 0) return;
    if (!this.syncFailure) {
      this.commit();
      await this.flush().catch(() => undefined);
    } else if (this.syncInFlight) {
      await this.syncInFlight;
    }
    for (const fd of this.readFds.values()) fs.closeSync(fd);
    this.readFds.clear();
    this.closeRetiredIfIdle();
    fs.closeSync(this.writeFd);
    this.writeFd = -1;
    const sumsFd = this.sums.closeWrite();
    if (sumsFd >= 0) fs.closeSync(sumsFd);
    this.sums.stop();
  }
}
