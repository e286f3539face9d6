/**
 * Retention: deleting whole sealed blocks from the front of the log, by age or by total size, as Kafka
 * deletes old segments. The record format has no time, so a block's age is its sealing time, kept in its
 * checksum sidecar's header when the next block began (for a block sealed by Go, which has no sidecar, the
 * block file's mtime: the time of its last write). The sealing time is at or after the newest record's
 * time, so a block is never deleted before its newest record is older than the limit.
 */
import type { BlockFiles } from './block-files.js';
import type { StorageLogger } from './storage-logger.js';
import { blockFileName } from '../format/block-addressing.js';

export interface RetentionPolicy {
  /** Delete a sealed block once its newest record is older than this (0: no age limit). */
  maxAgeMs: number;
  /** Delete the oldest sealed blocks while all sealed blocks together hold more than this (0: no limit). */
  maxBytes: number;
}

export interface SealedBlock {
  blockNo: number;
  size: number;
  sealedAt: number;
}

export interface RetentionResult {
  deleted: string[];
  bytesReclaimed: number;
  firstId: number;
}

/**
 * Which of the sealed blocks (oldest first, all older than the write block) to delete: a prefix, since
 * the log must stay one run of blocks. Pure.
 */
export function expiredPrefix(sealed: readonly SealedBlock[], policy: RetentionPolicy, now: number): number {
  let total = sealed.reduce((sum, b) => sum + b.size, 0);
  let n = 0;
  for (const b of sealed) {
    const tooOld = policy.maxAgeMs > 0 && now - b.sealedAt > policy.maxAgeMs;
    const tooBig = policy.maxBytes > 0 && total > policy.maxBytes;
    if (!tooOld && !tooBig) break;
    total -= b.size;
    n++;
  }
  return n;
}

export function retentionActive(policy: RetentionPolicy): boolean {
  return policy.maxAgeMs > 0 || policy.maxBytes > 0;
}

/** Deletes the expired blocks, oldest first; `beforeDelete` runs once with the new first id first. */
export function applyRetention(
  files: BlockFiles,
  policy: RetentionPolicy,
  logger: StorageLogger,
  now = Date.now(),
): RetentionResult {
  const sealed: SealedBlock[] = [];
  for (let b = files.firstBlock; b < files.writeBlock; b++) {
    const size = files.sealedBlockSize(b);
    if (size === 0) continue; // missing: nothing to delete
    sealed.push({ blockNo: b, size, sealedAt: files.sealedAt(b) });
  }
  const n = expiredPrefix(sealed, policy, now);
  const deleted: string[] = [];
  let bytesReclaimed = 0;
  for (let i = 0; i < n; i++) {
    const b = sealed[i];
    if (files.firstBlock > b.blockNo) continue;
    const why =
      policy.maxAgeMs > 0 && now - b.sealedAt > policy.maxAgeMs
        ? `sealed ${new Date(b.sealedAt).toISOString()}, older than ${policy.maxAgeMs / 3_600_000} hours`
        : `the sealed blocks exceed ${policy.maxBytes} bytes`;
    while (files.firstBlock <= b.blockNo) bytesReclaimed += files.deleteFirstBlock();
    deleted.push(blockFileName(b.blockNo));
    logger.log(`retention: deleted ${blockFileName(b.blockNo)} (${b.size} bytes; ${why})`);
  }
  return { deleted, bytesReclaimed, firstId: files.firstId };
}
