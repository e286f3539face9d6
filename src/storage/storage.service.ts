import type { RetentionPolicy, RetentionResult } from './retention.js';
import { Injectable, Logger, type OnApplicationShutdown } from '@nestjs/common';
import { ImsConfig } from '../config/ims-config.js';
import { SettingError } from '../config/setting-error.js';
import { BLOCK_HEADER_SIZE } from '../format/constants.js';
import type { RawMessage } from '../format/record.js';
import { DataFolderError, fileProblem } from './data-folder.js';
import { QueueFormatMismatchError } from './queues/folder-queue-format.js';
import { divergence, mergeFollowerHistory, trimHistory, type Divergence } from './epochs.js';
import type { EpochMark } from '../format/sync-frames.js';
import {
  MessageStore,
  type HistoryMessage,
  type OpenReport,
  type SaveResult,
  type SyncResult,
} from './message-store.js';

/** One SavePeerMessage of a batch. */
export interface PeerSave {
  appid: bigint;
  uid: bigint;
  deviceId: bigint;
  cmd: number;
  raw: Buffer;
}

export interface StorageStatus {
  open: boolean;
  nextId: number;
  durableId: number;
  writeBlock: number;
  writeBlockSize: number;
  blockSize: number;
  peerEntries: number;
  groupEntries: number;
  indexBytes: { peer: number; group: number };
  bytesSinceIndexSave: number;
  lastFsyncAt: number;
  fsyncFailure: string | null;
  durability: 'sync' | 'interval';
  /** The oldest message id still kept (retention deletes whole blocks from the front). */
  firstMessageId: number;
  /** Block bytes deleted by retention since start-up. */
  retentionBytesReclaimed: number;
  /** v2 (Go ims 2.0) or v4 (newest GoBelieve); where an upgrade switched the folder, if it did. */
  queueFormat: string;
  queueFormatSince: number | null;
}

/**
 * Decides whether a save may be acknowledged beyond the local fsync (min_insync_replicas): `admit` is
 * asked before anything is written and throws to refuse the save; `whenAcknowledged(end)` resolves once
 * enough replicas hold the log up to `end`, or rejects. Registered by replication.
 */
export interface AckGate {
  admit(): void;
  whenAcknowledged(end: number): Promise<void>;
}

/** One stretch of the log as replication reads it. */
export interface LogRange {
  records: { id: number; msg: RawMessage }[];
  next: number;
}

/**
 * The storage engine as a Nest provider: opens the data folder (main.ts decides when), makes saves
 * durable as the config's `durability` says, and closes the folder (log fsynced, index saved) last
 * at shutdown.
 */
@Injectable()
export class StorageService implements OnApplicationShutdown {
  private readonly logger = new Logger('Storage');
  private engine: MessageStore | null = null;
  private readonly writeListeners = new Set<() => void>();
  private ackGate: AckGate | null = null;
  /** Tails cut from the log because a master did not have them (ims_diverged_tail_cuts_total). */
  divergedTailCuts = 0;

  constructor(private readonly config: ImsConfig) {}

  /** Opens the data folder: lock, tail check and recovery, index load + repair or rebuild. */
  open(): OpenReport {
    if (this.engine) return this.engine.openReport!;
    const started = Date.now();
    try {
      this.engine = MessageStore.open({
        root: this.config.storage_root,
        blockSize: this.config.block_size,
        kefuAppid: this.config.kefu_appid,
        limit: this.config.limit,
        groupLimit: this.config.group_limit,
        hardLimit: this.config.hard_limit,
        queueFormat: this.config.queue_format,
        logger: this.logger,
        retention: this.retentionPolicy(),
        checksumRecheckMs: this.config.checksum_recheck_s * 1000,
      });
    } catch (err) {
      if (err instanceof DataFolderError) throw new SettingError('storage_root', err.folder, err.reason);
      if (err instanceof QueueFormatMismatchError)
        throw new SettingError('queue_format', err.setting, err.reason);
      // A file of the folder that cannot be opened or written (EACCES on a root-owned block): name the
      // setting, not just the errno and the file.
      const problem = fileProblem(err);
      if (problem) throw new SettingError('storage_root', this.config.storage_root, problem);
      throw err;
    }
    const r = this.engine.openReport!;
    this.logger.log(
      `opened ${this.config.storage_root}: ${r.blocks.length} block(s), index ${r.index}` +
        `${r.reason ? ` (${r.reason})` : ''}, ${r.recordsScanned} records / ${r.bytesScanned} bytes scanned, ` +
        `queue_format ${r.queueFormat} (${r.queueFormatEvidence}), ${r.peerEntries} users, ${r.groupEntries} groups, next id ${this.engine.nextId}, ${Date.now() - started} ms`,
    );
    return r;
  }

  /** The engine (read paths, replication). Throws before open(). */
  get store(): MessageStore {
    if (!this.engine) throw new Error('storage is not open');
    return this.engine;
  }

  get isOpen(): boolean {
    return this.engine !== null && !this.engine.isClosed;
  }

  /** Called after every successful write (replication's live stream listens). */
  onWrite(listener: () => void): () => void {
    this.writeListeners.add(listener);
    return () => this.writeListeners.delete(listener);
  }

  private async afterWrite<T>(result: T): Promise<T> {
    const end = this.store.nextId;
    for (const l of this.writeListeners) l();
    if (this.config.durability === 'sync') await this.store.whenDurable();
    if (this.ackGate) await this.ackGate.whenAcknowledged(end);
    return result;
  }

  /** Refuses a save before it is written when it could not be acknowledged (too few in-sync replicas). */
  private admit(): void {
    this.ackGate?.admit();
  }

  savePeerMessage(
    appid: bigint,
    uid: bigint,
    deviceId: bigint,
    cmd: number,
    raw: Buffer,
  ): Promise<SaveResult> {
    try {
      this.admit();
    } catch (err) {
      return Promise.reject(err as Error);
    }
    return this.afterWrite(this.store.savePeerMessage(appid, uid, deviceId, cmd, raw));
  }

  /**
   * Saves several independent messages and waits once for their durability. Each item succeeds or fails
   * on its own (a refused item stores nothing); the result holds its ids or its error.
   */
  async savePeerMessages(items: readonly PeerSave[]): Promise<(SaveResult | Error)[]> {
    const store = this.store;
    try {
      this.admit();
    } catch (err) {
      return items.map(() => err as Error);
    }
    const out: (SaveResult | Error)[] = [];
    for (const m of items) {
      try {
        out.push(store.savePeerMessage(m.appid, m.uid, m.deviceId, m.cmd, m.raw));
      } catch (err) {
        out.push(err as Error);
      }
    }
    if (out.some((r) => !(r instanceof Error))) {
      try {
        await this.afterWrite(undefined);
      } catch (err) {
        // Not durable: no item may be acknowledged.
        return out.map((r) => (r instanceof Error ? r : (err as Error)));
      }
    }
    return out;
  }

  savePeerGroupMessage(
    appid: bigint,
    members: bigint[],
    deviceId: bigint,
    cmd: number,
    raw: Buffer,
  ): Promise<SaveResult[]> {
    try {
      this.admit();
    } catch (err) {
      return Promise.reject(err as Error);
    }
    return this.afterWrite(this.store.savePeerGroupMessage(appid, members, deviceId, cmd, raw));
  }

  saveGroupMessage(
    appid: bigint,
    gid: bigint,
    deviceId: bigint,
    cmd: number,
    raw: Buffer,
  ): Promise<SaveResult> {
    try {
      this.admit();
    } catch (err) {
      return Promise.reject(err as Error);
    }
    return this.afterWrite(this.store.saveGroupMessage(appid, gid, deviceId, cmd, raw));
  }

  // ---- the surface replication uses ---------------------------------------------------------------

  /**
   * Reads (sync, counts, latest) answer only below `end()`, the acknowledged end replication knows
   * (Kafka's high watermark); null: everything written, as Go does.
   */
  setReadEnd(end: (() => number) | null): void {
    this.store.setReadEnd(end ?? (() => Infinity));
  }

  /** Replication's acknowledgement rule for saves (min_insync_replicas); null to remove it. */
  setAckGate(gate: AckGate | null): void {
    this.ackGate = gate;
  }

  /** The id the next record gets: the end of the log. */
  get logEnd(): number {
    return this.store.nextId;
  }

  /** The first record id kept: older ones lie in blocks retention deleted. */
  get firstId(): number {
    return this.store.firstId;
  }

  /** A slave behind its master's retention: restart the log empty at the master's first block. */
  restartAt(firstId: number): Promise<{ deletedBlocks: number; bytes: number }> {
    return this.store.restartAt(firstId);
  }

  /** The end of what is on disk (fdatasynced). */
  get durableEnd(): number {
    return Math.min(this.store.files.durableId, this.store.nextId);
  }

  /** Resolves once the log up to `end` (default: its end now) is on disk. */
  whenDurable(end?: number): Promise<void> {
    return this.store.whenDurable(end);
  }

  get blockSize(): number {
    return this.store.files.blockSize;
  }

  /** Where a record id starts a block's records: ids below a block's header move past it. */
  firstRecordAtOrAfter(id: number): number {
    const files = this.store.files;
    return files.offsetOf(id) < BLOCK_HEADER_SIZE ? files.idOf(files.blockOf(id), BLOCK_HEADER_SIZE) : id;
  }

  blockOf(id: number): number {
    return this.store.files.blockOf(id);
  }

  /** Records from `from` (a record boundary) before `end`, within one block, bounded by count and bytes. */
  readLog(from: number, end: number, maxRecords: number, maxBytes: number): LogRange {
    return this.store.readLog(from, end, maxRecords, maxBytes);
  }

  /** The newest epoch this node has written in or followed (0 before any). */
  get latestEpoch(): number {
    return this.store.epochs.latestEpoch;
  }

  /** Epoch → first id written in it, oldest first. */
  epochHistory(): EpochMark[] {
    return this.store.epochs.entries.map((e) => ({ epoch: e.epoch, startId: e.startId }));
  }

  /**
   * Begins the next epoch at the log end (a master's start), durably, before any write of it. Epochs a
   * former follower adopted from its master but never received records of are dropped first.
   */
  beginEpoch(atLeast = 0): number {
    const epochs = this.store.epochs;
    const epoch = Math.max(epochs.latestEpoch + 1, atLeast);
    const held = trimHistory(epochs.entries, this.logEnd);
    if (held.length !== epochs.entries.length) epochs.replace(held);
    epochs.begin(epoch, this.logEnd);
    return epoch;
  }

  /** How our log stands against a master's, given its epoch history and log end. */
  compareWithMaster(masterHistory: readonly EpochMark[], masterLogEnd: number): Divergence {
    return divergence(this.epochHistory(), this.logEnd, [...masterHistory], masterLogEnd);
  }

  /** A follower keeps its history up to where it agrees with its master, then the master's. */
  adoptEpochHistory(masterHistory: readonly EpochMark[], agreedEnd: number): void {
    const merged = mergeFollowerHistory(this.epochHistory(), [...masterHistory], agreedEnd);
    const now = this.epochHistory();
    const same =
      merged.length === now.length &&
      merged.every((e, i) => e.epoch === now[i].epoch && e.startId === now[i].startId);
    if (!same) this.store.epochs.replace(merged);
  }

  /** Cuts the log back to `to` (a slave whose tail the master does not have), keeping the bytes aside. */
  async truncateLog(to: number): Promise<{ keptAside: string[]; cutBytes: number }> {
    // The cut refuses while a write or fsync is pending: settle them first.
    await this.store.flush();
    const r = this.store.truncateLog(to);
    this.divergedTailCuts++;
    // Saved at once, so that a restart does not have to rebuild the index from every block.
    if (r.indexFiles === 'removed') await this.store.saveIndex();
    for (const l of this.writeListeners) l();
    return r;
  }

  /** Writes a record received from the master (slave side). */
  applyReplicated(id: number, msg: RawMessage): 'written' | 'skipped' {
    const r = this.store.applyReplicated(id, msg);
    if (r === 'written') for (const l of this.writeListeners) l();
    return r;
  }

  /** Writes consecutive records received from the master with one file write (slave side). */
  applyReplicatedRecords(ids: readonly number[], msgs: readonly RawMessage[]): number {
    const n = this.store.applyReplicatedRecords(ids, msgs);
    if (n > 0) for (const l of this.writeListeners) l();
    return n;
  }

  syncMessage(appid: bigint, uid: bigint, lastMsgId: number): SyncResult {
    return this.store.syncMessage(appid, uid, lastMsgId);
  }

  syncGroupMessage(appid: bigint, gid: bigint, lastMsgId: number, timestamp: number): SyncResult {
    return this.store.syncGroupMessage(appid, gid, lastMsgId, timestamp);
  }

  getNewCount(appid: bigint, uid: bigint, lastMsgId: number): number {
    return this.store.getNewCount(appid, uid, lastMsgId);
  }

  getLatestMessages(appid: bigint, uid: bigint, limit: number): HistoryMessage[] {
    return this.store.getLatestMessages(appid, uid, limit);
  }

  /** fdatasync the write block when dirty (the 1-second job; a no-op when nothing was written). */
  async flush(): Promise<void> {
    if (this.isOpen) await this.store.flush();
  }

  /** Saves the index files when the log grew by `index_save_blocks` blocks since the last save. */
  async saveIndexIfDue(): Promise<boolean> {
    if (!this.isOpen) return false;
    if (this.store.bytesSinceIndexSave <= this.config.index_save_blocks * this.config.block_size)
      return false;
    await this.store.saveIndex();
    return true;
  }

  async saveIndex(): Promise<void> {
    await this.store.saveIndex();
  }

  status(): StorageStatus {
    const s = this.engine;
    const f = s?.files;
    return {
      open: this.isOpen,
      nextId: s?.nextId ?? 0,
      durableId: f?.durableId ?? 0,
      writeBlock: f?.writeBlock ?? 0,
      writeBlockSize: f?.writeBlockSize ?? 0,
      blockSize: this.config.block_size,
      peerEntries: s?.peerCount ?? 0,
      groupEntries: s?.groupCount ?? 0,
      indexBytes: s?.indexBytes ?? { peer: 0, group: 0 },
      bytesSinceIndexSave: s?.bytesSinceIndexSave ?? 0,
      lastFsyncAt: f?.lastSyncTime ?? 0,
      fsyncFailure: f?.failed?.message ?? null,
      durability: this.config.durability,
      firstMessageId: s?.firstId ?? 0,
      retentionBytesReclaimed: s?.bytesReclaimed ?? 0,
      queueFormat: s?.queueFormat ?? this.config.queue_format ?? 'v2',
      queueFormatSince: s?.queueFormatSwitch?.since ?? null,
    };
  }

  retentionPolicy(): RetentionPolicy {
    return { maxAgeMs: this.config.retention_hours * 3_600_000, maxBytes: this.config.retention_bytes };
  }

  /** One retention pass (the `@Interval` job); a no-op unless retention_hours or retention_bytes is set. */
  applyRetention(): RetentionResult {
    if (!this.isOpen) return { deleted: [], bytesReclaimed: 0, firstId: 0 };
    return this.store.applyRetention(this.retentionPolicy());
  }

  /** Last step of shutdown: log fsynced, both index files saved, lock released. */
  async onApplicationShutdown(): Promise<void> {
    if (!this.engine || this.engine.isClosed) return;
    const started = Date.now();
    await this.engine.close();
    this.logger.log(`closed storage: log fsynced, index files saved (${Date.now() - started} ms)`);
  }
}
