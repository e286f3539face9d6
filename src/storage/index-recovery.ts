/**
 * Bringing the in-memory index in line with the log: load the index files and repair them from the
 * position they reflect, or rebuild both from all blocks when either is missing or unusable. One path
 * for opening a folder and for cutting its log back (log-truncation.ts), so both give the index a fresh
 * open would.
 */
import { BLOCK_HEADER_SIZE } from '../format/constants.js';
import { recordSize, type RawMessage } from '../format/record.js';
import { blockFileName, type BlockFiles } from './block-files.js';
import type { IdTable } from './id-table.js';
import { loadIndexFile, readIndexState } from './index-files.js';
import type { QueueIndexLayout } from './queue-replay.js';
import { StorageInputError, StorageOpenError } from './storage-errors.js';
import type { StorageLogger } from './storage-logger.js';

export interface TornTail {
  file: string;
  offset: number;
  bytes: number;
  savedTo: string | null;
  reason: string;
}

export interface IndexRecoveryTarget {
  root: string;
  files: BlockFiles;
  /** Filled by recovery; the caller passes empty tables. */
  peers: IdTable;
  groups: IdTable;
  logger: StorageLogger;
  /** The folder's queue format: which index files to load and how records enter the tables. */
  layout: QueueIndexLayout;
}

export interface IndexRecovery {
  index: 'loaded' | 'repaired' | 'rebuilt';
  reason: string | null;
  /** Where replay began (0 for a rebuild). */
  scannedFrom: number;
  recordsScanned: number;
  bytesScanned: number;
  tornTail: TornTail | null;
  /** Log position the index files on disk reflect and remain valid for (0: they are not usable). */
  savedLogEnd: number;
}

/**
 * Where the log is read up to. `open`: to the end of the write block, cutting a torn tail (the one disk
 * change recovery makes). `{ block, offset }`: up to that point only (a cut about to be made), changing
 * nothing; anything there that is not whole records, up to exactly that point, is an error.
 */
export type LogLimit = 'open' | { block: number; offset: number };

export function recoverIndex(t: IndexRecoveryTarget, limit: LogLimit): IndexRecovery {
  const { root, files, peers, groups } = t;
  const logEnd = limit === 'open' ? files.nextId : files.idOf(limit.block, limit.offset);
  const state = readIndexState(root);
  if (state && state.blockSize !== files.blockSize) {
    throw new StorageOpenError(
      `${root}: index_state says the folder was written with ${state.blockSize}-byte blocks, not ${files.blockSize}`,
    );
  }
  let index: IndexRecovery['index'] = 'repaired';
  let reason: string | null = null;
  let from = 0;
  let trustedStart = false;
  const firstId = files.firstId;
  const { specs } = t.layout;
  const peerLoad = loadIndexFile(root, specs.peer, peers, logEnd, firstId);
  const groupLoad = peerLoad.ok ? loadIndexFile(root, specs.group, groups, logEnd, firstId) : null;
  if (!peerLoad.ok || !groupLoad?.ok) {
    index = 'rebuilt';
    reason = !peerLoad.ok ? peerLoad.reason : (groupLoad as { reason: string }).reason;
    peers.clear();
    groups.clear();
  } else if (state && state.logEnd <= logEnd) {
    from = state.logEnd;
    trustedStart = true;
  } else if (state) {
    index = 'rebuilt';
    reason = `index_state reflects log position ${state.logEnd}, past the end of the log (${logEnd})`;
    peers.clear();
    groups.clear();
  } else {
    // Go-written folder: the files reflect the log up to their newest entry. Repair from the older of
    // the two (Go repaired the group index from the peer position and lost group entries: bug 5).
    const p = peerLoad.entries > 0 ? peerLoad.maxId : Infinity;
    const g = groupLoad.entries > 0 ? groupLoad.maxId : Infinity;
    from = Math.min(p, g);
    if (from === Infinity) from = 0;
  }
  if (from > 0 && from < firstId) {
    // The files reflect a point in a block retention deleted; every head there loaded as 0, so replaying
    // all remaining blocks brings them up to date.
    from = firstId;
    trustedStart = true;
  }
  let scan = scanFrom(t, limit, from, index === 'rebuilt', trustedStart);
  if (scan.restartFull) {
    index = 'rebuilt';
    reason = scan.restartFull;
    peers.clear();
    groups.clear();
    from = 0;
    scan = scanFrom(t, limit, 0, true, true);
  }
  // A Go index's start is its newest entry, which it already reflects: replaying only it changes nothing.
  const alreadyReflected = !trustedStart && from > 0 ? 1 : 0;
  if (index === 'repaired' && scan.records <= alreadyReflected) index = 'loaded';
  return {
    index,
    reason,
    scannedFrom: from,
    recordsScanned: scan.records,
    bytesScanned: scan.bytes,
    tornTail: scan.torn,
    savedLogEnd: index === 'rebuilt' ? 0 : from,
  };
}

/**
 * Replays every record from id `from` to the limit into the indexes (the one path used by rebuild,
 * repair and replication). On open a torn tail of the write block is cut; damage anywhere else is an
 * error naming file and offset. When an untrusted start (a Go index's newest entry) is not a record,
 * the index does not match the log and a full rebuild is asked for. Replaying a record the index already
 * reflects is harmless: replay is in log order, so each head ends at its newest entry.
 */
function scanFrom(
  t: IndexRecoveryTarget,
  limit: LogLimit,
  from: number,
  full: boolean,
  trustedStart: boolean,
): { records: number; bytes: number; torn: TornTail | null; restartFull: string | null } {
  const { files, peers, groups } = t;
  const lastBlock = limit === 'open' ? files.writeBlock : limit.block;
  let records = 0;
  let bytes = 0;
  let torn: TornTail | null = null;
  const firstBlock = full ? files.firstBlock : Math.max(files.blockOf(from), files.firstBlock);
  const replay = t.layout.replay;
  const apply = (id: number, msg: RawMessage): void => {
    records++;
    bytes += recordSize(msg.body.length);
    replay(peers, groups, id, msg);
  };
  for (let b = firstBlock; b <= lastBlock; b++) {
    const start = !full && b === files.blockOf(from) ? files.offsetOf(from) : BLOCK_HEADER_SIZE;
    const stop = limit !== 'open' && b === lastBlock ? limit.offset : undefined;
    let result;
    try {
      result = files.scan(b, start, apply, stop);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        t.logger.warn(`${blockFileName(b)} is missing: its history is gone (skipped)`);
        continue;
      }
      throw err;
    }
    if (result.problem === null) continue;
    if (!trustedStart && b === firstBlock && result.end === start && start > BLOCK_HEADER_SIZE) {
      return {
        records,
        bytes,
        torn,
        restartFull: `the saved index position ${from} is not a record in the log (${result.problem})`,
      };
    }
    const file = files.filePath(b);
    if (stop !== undefined) {
      throw new StorageInputError(
        `cannot cut the log at ${files.idOf(b, stop)} (${blockFileName(b)} offset ${stop}): it is not a ` +
          `record boundary (at offset ${result.end}: ${result.problem})`,
      );
    }
    if (b === files.writeBlock && limit === 'open') {
      // One rule with verify and repair: only a bad end with nothing whole after it is a crash's torn
      // tail. Whole records after bad bytes are acknowledged messages: never cut them at start-up.
      const next = files.nextWholeRecord(b, result.end);
      if (next !== null) {
        throw new StorageOpenError(
          `${file} offset ${result.end} (message id ${files.idOf(b, result.end)}): ${result.problem}; ` +
            `whole records follow at offset ${next}, so this is damage inside the log, not a torn tail, ` +
            `and start-up will not cut it. Run 'ims verify' on the folder; recover the record from a slave ` +
            `or a backup (ims backup) rather than cutting the good records after it.`,
        );
      }
    }
    if (b !== files.writeBlock || limit !== 'open') {
      throw new StorageOpenError(
        `${file} offset ${result.end}: ${result.problem}; only the newest block may have a torn tail. ` +
          `Run 'ims verify' on the folder to find the damage.`,
      );
    }
    const { cut, savedTo } = files.truncateWriteBlock(result.end);
    torn = { file, offset: result.end, bytes: cut, savedTo, reason: result.problem };
    t.logger.warn(
      `${file}: cut a torn tail at offset ${result.end} (${cut} bytes: ${result.problem}); ` +
        `the bytes are kept in ${savedTo}`,
    );
  }
  return { records, bytes, torn, restartFull: null };
}
