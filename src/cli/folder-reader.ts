/**
 * Read-only access to the block files of a data folder for the operator tools. Unlike BlockFiles it
 * never creates, truncates or rewrites anything, so `verify` and `inspect` are safe on any folder,
 * including one a server is using.
 */
import * as fs from 'node:fs';
import { BLOCK_HEADER_SIZE } from '../format/constants.js';
import { blockHeaderProblem, decodeRecord, type RawMessage } from '../format/record.js';
import { blockFileName, checksumMismatch, listBlocks } from '../storage/block-files.js';
import { recordChecksum } from '../format/checksum-file.js';
import { BlockAddressing } from '../format/block-addressing.js';
import { nextWholeRecord, scanBlock, type BlockScan } from '../storage/block-reader.js';
import { readSidecar, type BlockChecksums } from '../storage/record-checksums.js';
import { decidesQueueFormat } from '../storage/queues/folder-queue-format.js';

export type ReadResult = { kind: 'ok'; message: RawMessage; size: number } | { kind: 'bad'; reason: string };

export type { BlockScan } from '../storage/block-reader.js';

export class FolderReader extends BlockAddressing {
  readonly blocks: number[];
  private readonly fds = new Map<number, number>();
  private readonly sizes = new Map<number, number>();
  /** Records scanned that had a checksum (and matched it), and records that had none. */
  checked = 0;
  unchecked = 0;
  /**
   * When set, `read` also compares each record with its checksum and answers a mismatch as bad
   * (inspect). verify leaves it off: its scan checks every record once, in order.
   */
  checkReads = false;
  private readonly sidecars = new Map<number, BlockChecksums | null>();

  constructor(root: string, blockSize: number) {
    super(root, blockSize);
    this.blocks = listBlocks(root);
  }

  get newestBlock(): number {
    return this.blocks.length > 0 ? this.blocks[this.blocks.length - 1] : -1;
  }

  fileSize(blockNo: number): number {
    let size = this.sizes.get(blockNo);
    if (size === undefined) {
      try {
        size = fs.statSync(this.filePath(blockNo)).size;
      } catch {
        size = -1;
      }
      this.sizes.set(blockNo, size);
    }
    return size;
  }

  private fd(blockNo: number): number | null {
    let fd = this.fds.get(blockNo);
    if (fd === undefined) {
      try {
        fd = fs.openSync(this.filePath(blockNo), 'r');
      } catch {
        return null;
      }
      this.fds.set(blockNo, fd);
    }
    return fd;
  }

  /** A block's checksums from its sidecar, or null when it has no usable one (read once, kept). */
  sumsOf(blockNo: number): BlockChecksums | null {
    let sums = this.sidecars.get(blockNo);
    if (sums === undefined) {
      const read = readSidecar(this.root, blockNo);
      sums = read.status === 'ok' ? read.sums : null;
      this.sidecars.set(blockNo, sums);
    }
    return sums;
  }

  /** Why the block's header is unacceptable, or null. */
  headerProblem(blockNo: number): string | null {
    const fd = this.fd(blockNo);
    if (fd === null) return 'cannot open the file';
    const header = Buffer.alloc(BLOCK_HEADER_SIZE);
    const n = fs.readSync(fd, header, 0, BLOCK_HEADER_SIZE, 0);
    return blockHeaderProblem(header.subarray(0, n));
  }

  /** Reads the record at `id`; never throws for bad data (the reason is returned instead). */
  read(id: number): ReadResult {
    if (!Number.isSafeInteger(id) || id < 0) return { kind: 'bad', reason: `invalid id ${id}` };
    const blockNo = this.blockOf(id);
    const offset = this.offsetOf(id);
    if (offset < BLOCK_HEADER_SIZE) return { kind: 'bad', reason: 'points into the block header' };
    const size = this.fileSize(blockNo);
    const fd = size < 0 ? null : this.fd(blockNo);
    if (fd === null) return { kind: 'bad', reason: `${blockFileName(blockNo)} is missing` };
    if (offset >= size)
      return { kind: 'bad', reason: `past the end of ${blockFileName(blockNo)} (${size} bytes)` };
    let buf = Buffer.allocUnsafe(4096);
    let n = fs.readSync(fd, buf, 0, buf.length, offset);
    let result = decodeRecord(buf, 0, n);
    if (result.kind === 'short' && n === buf.length) {
      buf = Buffer.allocUnsafe(result.need);
      n = fs.readSync(fd, buf, 0, buf.length, offset);
      result = decodeRecord(buf, 0, n);
    }
    if (result.kind === 'ok') {
      if (this.checkReads) {
        const want = this.sumsOf(blockNo)?.find(offset) ?? -1;
        const got = want === -1 ? -1 : recordChecksum(buf, 0, result.size);
        if (got !== want) return { kind: 'bad', reason: checksumMismatch(id, got, want) };
      }
      return { kind: 'ok', message: result.message, size: result.size };
    }
    if (result.kind === 'short') return { kind: 'bad', reason: 'record is cut short by the end of the file' };
    return { kind: 'bad', reason: result.reason };
  }

  /**
   * Calls `onRecord` for each whole record of a block from `fromOffset`, in order; stops at the end of
   * the file or at the first bytes that are not a whole record. `onProgress` gets the offset reached.
   */
  scan(
    blockNo: number,
    fromOffset: number,
    onRecord: (id: number, msg: RawMessage, size: number, bytes: Buffer) => void,
    onProgress?: (offset: number) => void,
    sums: BlockChecksums | null = null,
  ): BlockScan {
    const fd = this.fd(blockNo);
    const fileSize = this.fileSize(blockNo);
    if (fd === null || fileSize < 0) return { end: fromOffset, fileSize: 0, problem: 'cannot open the file' };
    const idOf = (offset: number) => this.idOf(blockNo, offset);
    return scanBlock(
      fd,
      fileSize,
      fromOffset,
      sums,
      idOf,
      (offset, msg, bytes) => onRecord(idOf(offset), msg, bytes.length, bytes),
      {
        checked: (withChecksum) => (withChecksum ? this.checked++ : this.unchecked++),
        progress: onProgress,
      },
    );
  }

  /**
   * The offset of the first whole record after `offset` in a block (a MAGIC that starts a record that
   * decodes), or null when none follows: then the bytes from `offset` on are a torn tail, not damage
   * in the middle of good records.
   */
  nextWholeRecord(blockNo: number, offset: number, sums: BlockChecksums | null = null): number | null {
    const fd = this.fd(blockNo);
    if (fd === null) return null;
    return nextWholeRecord(fd, this.fileSize(blockNo), offset, sums);
  }

  /**
   * The kind of the log's first record that decides the folder's queue format (see
   * queueFormatOf), or null when the log holds none. Reads only up to that record.
   */
  firstQueueCmd(): number | null {
    // A look ahead, not a check: the checksum counts stay those of the walks that check.
    const { checked, unchecked } = this;
    try {
      for (const b of this.blocks) {
        try {
          this.scan(b, BLOCK_HEADER_SIZE, (_id, msg) => {
            if (decidesQueueFormat(msg.cmd)) throw new FoundQueueCmd(msg.cmd);
          });
        } catch (err) {
          if (err instanceof FoundQueueCmd) return err.cmd;
          throw err;
        }
      }
      return null;
    } finally {
      this.checked = checked;
      this.unchecked = unchecked;
    }
  }

  close(): void {
    for (const fd of this.fds.values()) fs.closeSync(fd);
    this.fds.clear();
  }
}

class FoundQueueCmd extends Error {
  constructor(readonly cmd: number) {
    super('found');
  }
}
