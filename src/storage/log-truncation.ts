/**
 * Cutting the log back to an earlier record boundary: a slave whose log runs past the point where its
 * master's diverged from it. Never on a node serving writes. The cut bytes are kept aside, never
 * destroyed (BlockFiles.cutBack), and the index afterwards is exactly the one a fresh open of the cut
 * folder would build (index-recovery.ts, run up to the cut).
 *
 * Order, for crash safety (a SIGKILL anywhere leaves a folder that opens consistently):
 *   1. Check the point and build the new index from the log below it, in new tables. Read-only: an
 *      invalid point throws here and nothing has changed.
 *   2. If the index files on disk reflect anything past the point, remove them (folder fsynced) before
 *      any log byte moves: once new records are written at the point, their old ids would name other
 *      records. A crash from here on only costs a rebuild at the next open.
 *   3. Cut the blocks (later blocks moved aside newest first, then the tail of the block holding the
 *      point copied aside before it is truncated): every intermediate folder is a whole, shorter log.
 *   4. Swap the new index in.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BLOCK_HEADER_SIZE } from '../format/constants.js';
import { blockFileName, fsyncDirectory, type BlockFiles } from './block-files.js';
import type { IdTable } from './id-table.js';
import { INDEX_STATE_FILE } from './index-files.js';
import { recoverIndex, type IndexRecovery } from './index-recovery.js';
import type { QueueIndexLayout } from './queue-replay.js';
import { StorageInputError, StorageWriteError } from './storage-errors.js';
import type { StorageLogger } from './storage-logger.js';

export interface LogTruncation {
  /** Files the cut bytes are kept in: whole later blocks (`message_M.diverged`), then the cut tail. */
  keptAside: string[];
  /** Record bytes cut (block headers of the blocks moved aside not counted). */
  cutBytes: number;
  /** How the index was brought to the cut: from the index files on disk, or rebuilt from all blocks. */
  index: IndexRecovery['index'] | 'unchanged';
  recordsScanned: number;
  /**
   * `removed`: the index files on disk reflected records past the cut and were removed; until the next
   * index save (`store.saveIndex()`) a restart rebuilds the index from all blocks.
   */
  indexFiles: 'kept' | 'removed';
}

export interface TruncationTarget {
  root: string;
  files: BlockFiles;
  logger: StorageLogger;
  layout: QueueIndexLayout;
  /** Takes the index built for the cut log (called once the blocks are cut, or once cutting failed). */
  adopt(peers: IdTable, groups: IdTable, savedLogEnd: number): void;
}

/** Block and offset of a cut point; the end of a full block is that block's size, not the next header. */
function locate(files: BlockFiles, to: number): { block: number; offset: number } {
  const where = `cannot cut the log at ${to}`;
  if (!Number.isSafeInteger(to) || to < 0) throw new StorageInputError(`${where}: not a message id`);
  if (to > files.nextId) {
    throw new StorageInputError(`${where}: past the end of the log (${files.nextId})`);
  }
  let block = files.blockOf(to);
  let offset = files.offsetOf(to);
  if (offset === 0 && block > 0) {
    block -= 1;
    offset = files.blockSize;
  }
  if (offset < BLOCK_HEADER_SIZE) {
    throw new StorageInputError(
      `${where}: ${blockFileName(block)} offset ${offset} is inside the block header`,
    );
  }
  if (!fs.existsSync(files.filePath(block))) {
    throw new StorageInputError(`${where}: ${blockFileName(block)} is missing`);
  }
  const size = files.sealedBlockSize(block);
  if (offset > size) {
    throw new StorageInputError(
      `${where}: ${blockFileName(block)} offset ${offset} is past the end of the block (${size} bytes)`,
    );
  }
  return { block, offset };
}

export function truncateLog(t: TruncationTarget, to: number): LogTruncation {
  const { files, root, logger } = t;
  if (files.failed) {
    throw new StorageWriteError(
      `storage refuses to cut the log after a failed fsync: ${files.failed.message}`,
    );
  }
  const { block, offset } = locate(files, to);
  const oldEnd = files.nextId;
  if (to === oldEnd) {
    return { keptAside: [], cutBytes: 0, index: 'unchanged', recordsScanned: 0, indexFiles: 'kept' };
  }
  if (!files.idle) {
    throw new StorageInputError(
      `cannot cut the log at ${to} while a write or an fsync is in progress; await store.flush() first`,
    );
  }

  // 1. The index of the log below the cut, from the saved files or all blocks; checks the point too.
  const layout = t.layout;
  const { peers, groups } = layout.newTables();
  const recovery = recoverIndex({ root, files, peers, groups, logger, layout }, { block, offset });

  // 2. Index files that reflect records past the cut must not survive it.
  let indexFiles: LogTruncation['indexFiles'] = 'kept';
  if (recovery.index === 'rebuilt') {
    const removed = [layout.specs.peer.name, layout.specs.group.name, INDEX_STATE_FILE].filter((name) => {
      try {
        fs.unlinkSync(path.join(root, name));
        return true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
        throw new StorageWriteError(`cannot remove ${path.join(root, name)}: ${(err as Error).message}`, {
          cause: err,
        });
      }
    });
    if (removed.length > 0) {
      fsyncDirectory(root);
      indexFiles = 'removed';
      logger.warn(
        `removed ${removed.join(', ')}: they reflect the log past ${to} (${recovery.reason}); ` +
          `the index is rebuilt until the next index save`,
      );
    }
  }

  // 3. The blocks; 4. the index. A failure midway has failed the files; the new index is still the
  // right one for every record below the cut, which the failure left untouched.
  let cut: { keptAside: string[]; cutBytes: number };
  try {
    cut = files.cutBack(block, offset);
  } catch (err) {
    t.adopt(peers, groups, recovery.savedLogEnd);
    throw err;
  }
  t.adopt(peers, groups, recovery.savedLogEnd);
  logger.warn(
    `cut the log back from ${oldEnd} to ${to} (${blockFileName(block)} offset ${offset}; ${cut.cutBytes} record bytes): ` +
      `the cut bytes are kept in ${cut.keptAside.map((f) => path.basename(f)).join(', ')}`,
  );
  return {
    keptAside: cut.keptAside,
    cutBytes: cut.cutBytes,
    index: recovery.index,
    recordsScanned: recovery.recordsScanned,
    indexFiles,
  };
}
