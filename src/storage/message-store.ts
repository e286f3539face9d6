/**
 * The storage engine: block files + the in-memory peer and group indexes, with the queries of ims.
 * Plain TypeScript (no Nest), so the server, the replication slave, the operator tools and the tests
 * all drive the same engine.
 *
 * This class owns the folder: opening and recovery, retention, replication's view of the log, the
 * index files. What a save writes and how a read walks a queue depend on the folder's queue format
 * (v2: Go ims 2.0; v4: the newest GoBelieve store) and live in queues/ behind `QueueStore`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BLOCK_HEADER_SIZE } from '../format/constants.js';
import type { QueueFormatName } from '../format/index-file.js';
import { decodeQueueEntry, isQueueCmd, V4_QUEUE_CMDS } from '../format/queue-entries.js';
import { recordSize, writeRecord, type RawMessage } from '../format/record.js';
import { BlockFiles, writeStaged } from './block-files.js';
import { DataDirLock } from './data-dir-lock.js';
import { ensureDataFolder } from './data-folder.js';
import { EpochHistory } from './epoch-history.js';
import type { IdTable } from './id-table.js';
import { saveIndexFiles } from './index-files.js';
import { recoverIndex, type IndexRecovery, type LogLimit } from './index-recovery.js';
import { truncateLog, type LogTruncation } from './log-truncation.js';
import { queueIndexLayout, type QueueIndexLayout } from './queue-replay.js';
import {
  folderQueueFormat,
  resolveQueueFormat,
  writeQueueFormatFile,
  type FolderQueueFormat,
} from './queues/folder-queue-format.js';
import type {
  HistoryMessage,
  QueueStore,
  QueueTables,
  SaveResult,
  SyncResult,
} from './queues/queue-store.js';
import { V2Queues } from './queues/v2-queues.js';
import { V4Queues } from './queues/v4-queues.js';
import { StorageInputError } from './storage-errors.js';
import { silentLogger, type StorageLogger } from './storage-logger.js';
import { storageProbes } from '../metrics/probes.js';
import { applyRetention, retentionActive, type RetentionPolicy, type RetentionResult } from './retention.js';

export type { HistoryMessage, SaveResult, SyncResult } from './queues/queue-store.js';

export interface MessageStoreOptions {
  root: string;
  /** Test-only smaller blocks; a folder must always be opened with the size it was written with. */
  blockSize?: number;
  maxOpenReadFiles?: number;
  logger?: StorageLogger;
  /** The checked-read recheck window's epoch, ms (0: every read checked; default RECHECK_EPOCH_MS). */
  checksumRecheckMs?: number;
  /** App id of the customer-service app (decides who sent a MSG_CUSTOMER_SUPPORT). */
  kefuAppid?: bigint;
  /** Most messages one SyncMessage returns (Go default 3000). */
  limit?: number;
  /** v2: after this many messages SyncMessage follows only the one-to-one chain (0: no limit). */
  groupLimit?: number;
  /** v4: a backlog past this many messages is sent one-to-one messages first (0: no limit). */
  hardLimit?: number;
  /**
   * The `queue_format` setting: must agree with what the folder holds; an empty folder takes it (v2
   * when unset, and then a slave adopts whatever its master sends first).
   */
  queueFormat?: QueueFormatName;
  /** Take the folder's lock (default true). Read-only tools that never write may pass false. */
  lock?: boolean;
  lockRole?: string;
  /** Retention of sealed blocks (off when absent); applied at open and by `applyRetention`. */
  retention?: RetentionPolicy;
}

/** What opening a folder found and did: the index recovery's report, plus the blocks and totals. */
export interface OpenReport extends Omit<IndexRecovery, 'savedLogEnd'> {
  blocks: number[];
  queueFormat: QueueFormatName;
  /** What showed the folder's format (or that it had none yet). */
  queueFormatEvidence: string;
  peerEntries: number;
  groupEntries: number;
  elapsedMs: number;
}

/** Most bytes readLog reads with one pread. */
const READ_RUN_BYTES = 1 << 20;

export class MessageStore {
  readonly files: BlockFiles;
  /** The index tables (replaced in place when the log is cut); the queue store reads the same object. */
  private readonly tables: QueueTables;
  private layout: QueueIndexLayout = queueIndexLayout('v2');
  private queues!: QueueStore;
  private readEnd: () => number = () => Infinity;
  /** Where the folder switched format (its `queue_format` file, read once at open). */
  private formatSwitch: { since: number; from: QueueFormatName } | null = null;
  /** False while an empty folder's format only comes from the default: a slave adopts its master's. */
  private formatDecided = false;
  private readonly logger: StorageLogger;
  private readonly lock: DataDirLock | null;
  /** Log position reflected by the index files on disk. */
  private savedLogEnd = 0;
  private savingIndex: Promise<void> | null = null;
  private closed = false;
  private epochHistory: EpochHistory | null = null;
  openReport: OpenReport | null = null;
  /** Block bytes deleted by retention since this store was opened. */
  bytesReclaimed = 0;

  private constructor(private readonly options: MessageStoreOptions) {
    this.logger = options.logger ?? silentLogger;
    this.files = new BlockFiles({
      root: options.root,
      blockSize: options.blockSize,
      maxOpenReadFiles: options.maxOpenReadFiles,
      logger: this.logger,
      ...(options.checksumRecheckMs !== undefined ? { checksumRecheckMs: options.checksumRecheckMs } : {}),
    });
    this.lock = options.lock === false ? null : new DataDirLock(options.root, options.lockRole ?? 'ims');
    this.tables = this.layout.newTables();
  }

  /** Serves the folder in `format`: its index layout, fresh tables and the queue store. */
  private useFormat(format: QueueFormatName): void {
    this.layout = queueIndexLayout(format);
    const fresh = this.layout.newTables();
    this.tables.peers = fresh.peers;
    this.tables.groups = fresh.groups;
    const settings = {
      limit: this.options.limit ?? 3000,
      groupLimit: this.options.groupLimit ?? 0,
      hardLimit: this.options.hardLimit ?? 0,
      kefuAppid: this.options.kefuAppid ?? 0n,
      v2Below: format === 'v4' ? (this.queueFormatSwitch?.since ?? 0) : 0,
    };
    this.queues =
      format === 'v4'
        ? new V4Queues(this.files, this.tables, settings)
        : new V2Queues(this.files, this.tables, settings);
    this.queues.readEnd = this.readEnd;
  }

  /** Reads answer only below this position from now on (the acknowledged end; see QueueStore.readEnd). */
  setReadEnd(end: () => number): void {
    this.readEnd = end;
    this.queues.readEnd = end;
  }

  /** The folder's queue format (v2: Go ims 2.0; v4: the newest GoBelieve store). */
  get queueFormat(): QueueFormatName {
    return this.layout.format;
  }

  /**
   * Opens a data folder: takes its lock, checks the blocks, recovers a torn tail of the write block,
   * loads the index files and repairs them from the position they reflect, or rebuilds both from all
   * blocks when either is missing or unusable.
   */
  static open(options: MessageStoreOptions): MessageStore {
    const store = new MessageStore(options);
    store.openFolder();
    return store;
  }

  private openFolder(): void {
    const started = Date.now();
    const root = this.options.root;
    ensureDataFolder(root);
    if (this.lock) {
      const note = this.lock.acquire();
      if (note) this.logger.warn(note);
    }
    try {
      this.epochHistory = EpochHistory.load(root);
      const { blocks } = this.files.open();
      // Before the index is recovered: replay then starts at the first retained block.
      if (this.options.retention && retentionActive(this.options.retention)) {
        this.bytesReclaimed += applyRetention(this.files, this.options.retention, this.logger).bytesReclaimed;
      }
      const held = folderQueueFormat(root, this.files);
      this.decideFormat(held);
      const r = this.recoverIndexTo('open');
      this.savedLogEnd = r.savedLogEnd;
      this.files.adoptUncheckedRecords();
      this.openReport = {
        blocks,
        queueFormat: this.layout.format,
        queueFormatEvidence: held.evidence,
        index: r.index,
        reason: r.reason,
        scannedFrom: r.scannedFrom,
        recordsScanned: r.recordsScanned,
        bytesScanned: r.bytesScanned,
        tornTail: r.tornTail,
        peerEntries: this.tables.peers.size,
        groupEntries: this.tables.groups.size,
        elapsedMs: Date.now() - started,
      };
    } catch (err) {
      this.lock?.release();
      throw err;
    }
  }

  /** Loads (and repairs) or rebuilds the index into the current tables, in the folder's format. */
  private recoverIndexTo(limit: LogLimit): IndexRecovery {
    const { peers, groups } = this.tables;
    const t = { root: this.options.root, files: this.files, peers, groups, logger: this.logger };
    return recoverIndex({ ...t, layout: this.layout }, limit);
  }

  private decideFormat(held: FolderQueueFormat): void {
    const format = resolveQueueFormat(this.options.root, held, this.options.queueFormat);
    const r = held.record;
    this.formatSwitch = r?.from ? { since: r.since, from: r.from } : null;
    this.useFormat(format);
    this.formatDecided = held.format !== null || this.options.queueFormat !== undefined;
    // An empty folder set to v4 records it, so a restart without the setting still serves v4.
    if (held.format === null && format === 'v4') {
      writeQueueFormatFile(this.options.root, { format: 'v4', since: 0 });
    }
  }

  /** The id of the oldest record the log can still hold; older ids lie in blocks retention deleted. */
  get firstId(): number {
    return this.files.firstId;
  }

  /**
   * Deletes sealed blocks past the retention limits (the `@Interval` job; also run at open). Index heads
   * that pointed into a deleted block are set to 0, as a rebuild from the remaining blocks would have
   * them; chains that reach a deleted block end there.
   */
  applyRetention(
    policy: RetentionPolicy | undefined = this.options.retention,
    now = Date.now(),
  ): RetentionResult {
    if (this.closed) throw new StorageInputError('storage is closed');
    if (!policy || !retentionActive(policy)) return { deleted: [], bytesReclaimed: 0, firstId: this.firstId };
    const result = applyRetention(this.files, policy, this.logger, now);
    if (result.deleted.length > 0) {
      this.bytesReclaimed += result.bytesReclaimed;
      dropHeadsBelow(this.tables.peers, this.layout.specs.peer.idSlots, result.firstId);
      dropHeadsBelow(this.tables.groups, this.layout.specs.group.idSlots, result.firstId);
    }
    return result;
  }

  /** Enters a record into the indexes (Go: execMessage). */
  private applyRecord(id: number, msg: RawMessage): void {
    this.layout.replay(this.tables.peers, this.tables.groups, id, msg);
  }

  /** The folder's epoch history (`epoch_history`), loaded at open; replication decides when epochs begin. */
  get epochs(): EpochHistory {
    if (!this.epochHistory) throw new Error('storage is not open');
    return this.epochHistory;
  }

  /** A user's index entry, values in the order of the format's index file (zeros when unknown). */
  peerHead(appid: bigint, uid: bigint): number[] {
    return this.queues.peerIndexEntry(appid, uid);
  }

  /** A super group's index entry, as `peerHead`. */
  groupHead(appid: bigint, gid: bigint): number[] {
    return this.queues.groupIndexEntry(appid, gid);
  }

  get peerCount(): number {
    return this.tables.peers.size;
  }

  get groupCount(): number {
    return this.tables.groups.size;
  }

  get indexBytes(): { peer: number; group: number } {
    return { peer: this.tables.peers.byteSize, group: this.tables.groups.byteSize };
  }

  // ---- saves (written by the folder's queue format) ------------------------------------------------

  private checkSave(cmd: number, body: Buffer): void {
    if (this.closed) throw new StorageInputError('storage is closed');
    const problem = this.queues.saveProblem(cmd, body);
    if (problem) throw new StorageInputError(problem);
    this.formatDecided = true;
  }

  /** Stores a message in a user's queue. Returns its id and the id of the user's previous message. */
  savePeerMessage(appid: bigint, uid: bigint, deviceId: bigint, cmd: number, body: Buffer): SaveResult {
    this.checkSave(cmd, body);
    return this.queues.savePeerMessage(appid, uid, deviceId, cmd, body);
  }

  /**
   * Stores a normal group's message for every member (v2: once, entered into every queue; v4: a copy
   * per member). Returns, per member in order, the message id and that member's previous message id.
   */
  savePeerGroupMessage(
    appid: bigint,
    members: readonly bigint[],
    deviceId: bigint,
    cmd: number,
    body: Buffer,
  ): SaveResult[] {
    this.checkSave(cmd, body);
    if (members.length === 0) throw new StorageInputError('members is empty');
    return this.queues.savePeerGroupMessage(appid, members, deviceId, cmd, body);
  }

  /** Stores a super-group message in the group's queue. */
  saveGroupMessage(appid: bigint, gid: bigint, deviceId: bigint, cmd: number, body: Buffer): SaveResult {
    this.checkSave(cmd, body);
    return this.queues.saveGroupMessage(appid, gid, deviceId, cmd, body);
  }

  /** The id the next record will get (a slave's cursor). */
  get nextId(): number {
    return this.files.nextId;
  }

  /** Resolves once everything written before `id` is on disk (group commit). */
  whenDurable(id: number = this.files.nextId): Promise<void> {
    return this.files.whenDurable(id);
  }

  // ---- reads (walked by the folder's queue format) -------------------------------------------------

  /** One page of a user's messages newer than `sinceMsgId`, newest first (v2: the newest page). */
  syncMessage(appid: bigint, uid: bigint, sinceMsgId: number): SyncResult {
    return this.queues.syncMessage(appid, uid, sinceMsgId);
  }

  /** Messages of a super group newer than `sinceMsgId`, newest first, at most 100. */
  syncGroupMessage(appid: bigint, gid: bigint, sinceMsgId: number, timestamp: number): SyncResult {
    return this.queues.syncGroupMessage(appid, gid, sinceMsgId, timestamp);
  }

  /** The newest `limit` messages of a user (not MSG_SYSTEM), newest first. */
  getLatestMessages(appid: bigint, uid: bigint, limit: number): HistoryMessage[] {
    return this.queues.getLatestMessages(appid, uid, limit);
  }

  /** v2: 0 or 1 (is there a message the user did not send); v4: the exact number of newer entries. */
  getNewCount(appid: bigint, uid: bigint, sinceMsgId: number): number {
    return this.queues.getNewCount(appid, uid, sinceMsgId);
  }

  /** Reads any record by id (replication, tools). */
  readRecord(id: number): RawMessage {
    return this.files.read(id);
  }

  // ---- replication (slave side) --------------------------------------------------------------------

  /**
   * Writes a record received from the master at exactly its master id and enters it into the index.
   * Returns 'written', or 'skipped' when the slave already has that id. An id in a later block rolls to
   * it; an id past the end of the current block's data is refused (a gap is never padded).
   */
  applyReplicated(id: number, msg: RawMessage): 'written' | 'skipped' {
    if (id < this.files.nextId) return 'skipped';
    if (this.layout.format === 'v2' && V4_QUEUE_CMDS.has(msg.cmd)) this.followMasterToV4(id, msg);
    else if (!this.formatDecided && isQueueCmd(msg.cmd)) this.formatDecided = true;
    const size = recordSize(msg.body.length);
    const startsNextBlock =
      this.files.blockOf(id) === this.files.writeBlock + 1 && this.files.offsetOf(id) === BLOCK_HEADER_SIZE;
    if (id !== this.files.nextId && !startsNextBlock) {
      throw new StorageInputError(
        `replicated record ${id} does not follow the log end ${this.files.nextId}: refusing to leave a gap`,
      );
    }
    writeStaged(this.files, () => {
      const got = this.files.reserve(size);
      if (got !== id) {
        throw new StorageInputError(
          `replicated record ${id} would land at ${got}: the block sizes of master and slave differ`,
        );
      }
      writeRecord(this.files.stagingBuffer, this.files.stagingOffsetOf(id), msg);
    });
    this.applyRecord(id, msg);
    return 'written';
  }

  /**
   * applyReplicated for consecutive records (one batch from the master) with one file write for all of
   * them. Records the slave already has (a prefix) are skipped; the first new one must follow the log end
   * as in applyReplicated, and each must land at exactly its id. Returns how many were written. Should the
   * write fail part way (after a block roll), the records that reached the file are still indexed.
   */
  applyReplicatedRecords(ids: readonly number[], msgs: readonly RawMessage[]): number {
    if (this.layout.format === 'v2' && msgs.some((m) => V4_QUEUE_CMDS.has(m.cmd))) {
      // The format switches inside this batch: one record at a time, so the switch sees the log up to it.
      let written = 0;
      ids.forEach((id, i) => (written += this.applyReplicated(id, msgs[i]) === 'written' ? 1 : 0));
      return written;
    }
    if (!this.formatDecided && msgs.some((m) => isQueueCmd(m.cmd))) this.formatDecided = true;
    let from = 0;
    while (from < ids.length && ids[from] < this.files.nextId) from++;
    if (from === ids.length) return 0;
    const first = ids[from];
    const startsNextBlock =
      this.files.blockOf(first) === this.files.writeBlock + 1 &&
      this.files.offsetOf(first) === BLOCK_HEADER_SIZE;
    if (first !== this.files.nextId && !startsNextBlock) {
      throw new StorageInputError(
        `replicated record ${first} does not follow the log end ${this.files.nextId}: refusing to leave a gap`,
      );
    }
    let indexed = from;
    try {
      writeStaged(this.files, () => {
        for (let i = from; i < ids.length; i++) {
          const got = this.files.reserve(recordSize(msgs[i].body.length));
          if (got !== ids[i]) {
            throw new StorageInputError(
              `replicated record ${ids[i]} would land at ${got}: the block sizes of master and slave differ`,
            );
          }
          writeRecord(this.files.stagingBuffer, this.files.stagingOffsetOf(got), msgs[i]);
        }
      });
    } finally {
      const end = this.files.nextId;
      for (; indexed < ids.length && ids[indexed] < end; indexed++)
        this.applyRecord(ids[indexed], msgs[indexed]);
    }
    return indexed - from;
  }

  /**
   * A master sends v4 queue records to this v2 slave: its folder is new, or its master was upgraded.
   * The slave switches as `ims upgrade` would (its own v2 history stays readable), unless the setting
   * pins v2.
   */
  private followMasterToV4(id: number, msg: RawMessage): void {
    if (this.options.queueFormat === 'v2') {
      throw new StorageInputError(
        `replicated record ${id} is a v4 queue record (cmd ${msg.cmd}) but queue_format is v2 here: ` +
          `the master serves v4; remove the setting (the slave then follows) or set it to v4`,
      );
    }
    const hasV2Queues = this.formatDecided && (this.tables.peers.size > 0 || this.tables.groups.size > 0);
    // The master switched at the log end, where the message of its first v4 save begins.
    const firstV4Message = decodeQueueEntry(msg.cmd, msg.flag, msg.body)?.msgid ?? id;
    this.switchToV4(hasV2Queues ? Math.min(firstV4Message, id) : 0);
    this.logger.log(`the master writes v4 queues (record ${id}): this folder now serves queue_format v4`);
  }

  /**
   * Switches a v2 folder to v4 from log id `since` on: records the switch (`queue_format` file), then
   * rebuilds the index by the v4 rule, which counts the v2 entries below `since` into each queue's
   * sequence so chains and counts continue across the switch. No record is rewritten: message ids
   * (file positions) and clients' sync keys stay valid. The v2 index files are removed (stale from now).
   */
  switchToV4(since: number = this.files.nextId): void {
    if (this.closed) throw new StorageInputError('storage is closed');
    if (this.layout.format === 'v4') throw new StorageInputError('the folder already serves queue_format v4');
    const root = this.options.root;
    writeQueueFormatFile(root, { format: 'v4', since, from: 'v2', switchedAt: new Date().toISOString() });
    this.formatSwitch = { since, from: 'v2' };
    const v2Specs = this.layout.specs;
    this.useFormat('v4');
    this.formatDecided = true;
    this.recoverIndexTo({ block: this.files.writeBlock, offset: this.files.writeBlockSize });
    this.savedLogEnd = 0;
    for (const spec of [v2Specs.peer, v2Specs.group]) fs.rmSync(path.join(root, spec.name), { force: true });
  }

  /** Where the folder switched to its format (`ims upgrade`), or null when it always was. */
  get queueFormatSwitch(): { since: number; from: QueueFormatName } | null {
    return this.formatSwitch;
  }

  /**
   * Cuts the log back to `to` (a slave whose log ran past the point where its master's diverged). `to`
   * must be the start of a record, the end of a block's last record, or the log end (a no-op). The cut
   * bytes are kept aside (`message_M.diverged`, `message_N.diverged-OFFSET`, each fsynced) and logged;
   * afterwards the index is the one a fresh open of the cut folder builds, and the next record is
   * written at `to`. Never call it on a node serving writes; it refuses while a write, an fsync or an
   * index save is in progress (await `flush()` / `saveIndex()` first). An invalid point throws a
   * StorageInputError and changes nothing; a failure midway fails the store closed (a restart opens the
   * folder consistently). Cut the log before storing the master's epoch history, not after.
   * See log-truncation.ts for the order of the steps.
   */
  truncateLog(to: number): LogTruncation {
    if (this.closed) throw new StorageInputError('storage is closed');
    if (this.savingIndex) {
      throw new StorageInputError(
        `cannot cut the log at ${to} while the index files are being saved; await store.saveIndex() first`,
      );
    }
    return truncateLog(
      {
        root: this.options.root,
        files: this.files,
        logger: this.logger,
        layout: this.layout,
        adopt: (peers, groups, savedLogEnd) => {
          this.tables.peers = peers;
          this.tables.groups = groups;
          this.savedLogEnd = savedLogEnd;
        },
      },
      to,
    );
  }

  /**
   * Reads records in log order starting at `fromId` (a record boundary, or the end of a block), stopping
   * before `endId`, after `maxCount` records or once `maxBytes` of bodies are collected, and at the end
   * of a block (a batch never spans two blocks). Returns the records and the id to continue from.
   */
  readLog(
    fromId: number,
    endId: number,
    maxCount: number,
    maxBytes: number,
  ): { records: { id: number; msg: RawMessage }[]; next: number } {
    const files = this.files;
    if (fromId < files.firstId) {
      // Never skip over deleted blocks: a slave would be left with a hole in its log.
      throw new StorageInputError(
        `${fromId} lies in a block deleted by retention (the log now starts at ${files.firstId})`,
      );
    }
    let id = fromId;
    // At or past the end of a sealed block: continue at the next block's first record.
    while (files.blockOf(id) < files.writeBlock && id < endId) {
      const block = files.blockOf(id);
      const size = files.sealedBlockSize(block);
      if (files.offsetOf(id) < size) break;
      id = files.idOf(block + 1, BLOCK_HEADER_SIZE);
    }
    const records: { id: number; msg: RawMessage }[] = [];
    let bytes = 0;
    const block = files.blockOf(id);
    const blockEnd =
      block < files.writeBlock ? files.idOf(block, files.sealedBlockSize(block)) : files.nextId;
    const stop = Math.min(endId, blockEnd);
    // One pread per run of records (at most 1 MiB), not one per record.
    while (id < stop && records.length < maxCount && bytes < maxBytes) {
      for (const r of files.readRun(id, stop, Math.min(maxBytes - bytes, READ_RUN_BYTES))) {
        records.push(r);
        const size = recordSize(r.msg.body.length);
        bytes += size;
        id += size;
        if (records.length >= maxCount || bytes >= maxBytes) break;
      }
    }
    return { records, next: id };
  }

  /**
   * A slave whose log lies wholly before its master's first retained block (`firstId`): its blocks are
   * deleted (the master's retention expired them) and the log restarts empty at `firstId`'s block, so
   * the next record from the master lands at exactly its id. Index files are saved for the empty log.
   */
  async restartAt(firstId: number): Promise<{ deletedBlocks: number; bytes: number }> {
    if (this.closed) throw new StorageInputError('storage is closed');
    if (this.savingIndex) await this.savingIndex;
    await this.files.flush();
    const r = this.files.restartAt(this.files.blockOf(firstId));
    this.tables.peers.clear();
    this.tables.groups.clear();
    this.bytesReclaimed += r.bytes;
    this.savedLogEnd = 0;
    await this.saveIndex();
    return r;
  }

  // ---- index persistence ---------------------------------------------------------------------------

  /** Log bytes written since the index files were last saved. */
  get bytesSinceIndexSave(): number {
    return this.files.nextId - this.savedLogEnd;
  }

  /**
   * Saves both index files. The log is made durable first, so a saved index never points past the
   * durable end of the log (Go bug 11). Concurrent calls share one save.
   */
  saveIndex(): Promise<void> {
    if (this.savingIndex) return this.savingIndex;
    this.savingIndex = (async () => {
      try {
        const started = performance.now();
        const logEnd = this.files.nextId;
        const peer = this.tables.peers.snapshot();
        const group = this.tables.groups.snapshot();
        await this.files.whenDurable(logEnd);
        await saveIndexFiles(this.options.root, this.layout.specs, peer, group, {
          logEnd,
          blockSize: this.files.blockSize,
          peerEntries: peer.count,
          groupEntries: group.count,
        });
        this.savedLogEnd = logEnd;
        storageProbes.indexSaved((performance.now() - started) / 1000);
      } finally {
        this.savingIndex = null;
      }
    })();
    return this.savingIndex;
  }

  /** fdatasync the write block if it is dirty (the 1-second job). */
  flush(): Promise<void> {
    return this.files.flush();
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Makes the log durable, saves both index files, closes the files and releases the lock. */
  async close(options: { saveIndex?: boolean } = {}): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      if (options.saveIndex !== false && !this.files.failed) await this.saveIndex();
    } finally {
      await this.files.close();
      this.lock?.release();
    }
  }
}

/** Sets to 0 every index id (not counts) that points below `firstId` (into a block retention deleted). */
function dropHeadsBelow(table: IdTable, idSlots: readonly number[], firstId: number): void {
  for (let e = 0; e < table.size; e++) {
    for (const v of idSlots) {
      const id = table.getValue(e, v);
      if (id !== 0 && id < firstId) {
        table.setValue(e, v, 0);
        if (v === 0) table.setAux(e, 0);
      }
    }
  }
}
