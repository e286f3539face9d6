/**
 * The storage engine: block files + the in-memory peer and group indexes, with the queries of ims.
 * Plain TypeScript (no Nest), so the server, the replication slave, the operator tools and the tests
 * all drive the same engine.
 *
 * Layout of a save (Go ims 2.0 byte for byte):
 *   SavePeerMessage:  message record (id M), then MSG_OFFLINE_V2 {appid, uid, M, device, prev, prev_peer}
 *   SaveGroupMessage: message record (id M), then MSG_GROUP_IM_LIST {appid, 0, M, gid, device, prev}
 * A user's index entry holds last_id (newest queue entry) and last_peer_id (newest entry that is not a
 * group message); a group's holds last_id.
 */
import {
  BLOCK_HEADER_SIZE,
  Cmd,
  DEFAULT_MESSAGE_VERSION,
  GROUP_SYNC_LIMIT,
  LATEST_CMDS,
  MESSAGE_FLAG_GROUP,
  SYNC_CMDS,
  cmdName,
} from '../format/constants.js';
import {
  GROUP_ENTRY_BODY_SIZE,
  OFFLINE_V2_BODY_SIZE,
  decodeCustomerBody,
  decodeGroupEntry,
  decodeImBody,
  decodeOfflineEntry,
  replyBody,
  saveBodyProblem,
  writeGroupEntryBody,
  writeOfflineV2Body,
} from '../format/bodies.js';
import { int64Hi, int64Lo } from '../format/int64.js';
import { recordSize, writeMessageHeader, writeRecord, type RawMessage } from '../format/record.js';
import { BlockFiles, blockFileName } from './block-files.js';
import { DataDirLock } from './data-dir-lock.js';
import { ensureDataFolder } from './data-folder.js';
import { EpochHistory } from './epoch-history.js';
import { IdTable } from './id-table.js';
import {
  GROUP_LAST_ID,
  PEER_LAST_ID,
  PEER_LAST_PEER_ID,
  msgIdDelta,
  replayQueueEntry,
} from './queue-replay.js';
import { saveIndexFiles } from './index-files.js';
import { recoverIndex, type IndexRecovery } from './index-recovery.js';
import { truncateLog, type LogTruncation } from './log-truncation.js';
import { CorruptRecordError, StorageInputError } from './storage-errors.js';
import { silentLogger, type StorageLogger } from './storage-logger.js';
import { MAGIC } from '../format/constants.js';
import { storageProbes } from '../metrics/probes.js';
import { applyRetention, retentionActive, type RetentionPolicy, type RetentionResult } from './retention.js';

export interface MessageStoreOptions {
  root: string;
  /** Test-only smaller blocks; a folder must always be opened with the size it was written with. */
  blockSize?: number;
  maxOpenReadFiles?: number;
  logger?: StorageLogger;
  /** App id of the customer-service app (decides who sent a MSG_CUSTOMER_SUPPORT). */
  kefuAppid?: bigint;
  /** Most messages one SyncMessage returns (Go default 3000). */
  limit?: number;
  /** After this many messages SyncMessage follows only the one-to-one chain (0: no limit). */
  groupLimit?: number;
  /** Take the folder's lock (default true). Read-only tools that never write may pass false. */
  lock?: boolean;
  lockRole?: string;
  /** Retention of sealed blocks (off when absent); applied at open and by `applyRetention`. */
  retention?: RetentionPolicy;
}

export interface HistoryMessage {
  msgId: number;
  deviceId: bigint;
  cmd: number;
  raw: Buffer;
}

export interface SyncResult {
  messages: HistoryMessage[];
  lastMsgId: number;
  hasMore: boolean;
}

export interface SaveResult {
  msgId: number;
  prevMsgId: number;
}

/** What opening a folder found and did: the index recovery's report, plus the blocks and totals. */
export interface OpenReport extends Omit<IndexRecovery, 'savedLogEnd'> {
  blocks: number[];
  peerEntries: number;
  groupEntries: number;
  elapsedMs: number;
}

const ENTRY_RECORD_SIZE = recordSize(OFFLINE_V2_BODY_SIZE);
const GROUP_ENTRY_RECORD_SIZE = recordSize(GROUP_ENTRY_BODY_SIZE);
/** How far past the limit a sync keeps walking to learn whether more messages exist. */
const HAS_MORE_PROBE = 64;
/** Most bytes readLog reads with one pread. */
const READ_RUN_BYTES = 1 << 20;

export class MessageStore {
  readonly files: BlockFiles;
  private peers = new IdTable(2);
  private groups = new IdTable(1);
  private readonly logger: StorageLogger;
  private readonly lock: DataDirLock | null;
  private readonly kefuAppid: bigint;
  readonly limit: number;
  readonly groupLimit: number;
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
    });
    this.lock = options.lock === false ? null : new DataDirLock(options.root, options.lockRole ?? 'ims');
    this.kefuAppid = options.kefuAppid ?? 0n;
    this.limit = options.limit ?? 3000;
    this.groupLimit = options.groupLimit ?? 0;
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
      const r = recoverIndex(
        { root, files: this.files, peers: this.peers, groups: this.groups, logger: this.logger },
        'open',
      );
      this.savedLogEnd = r.savedLogEnd;
      this.files.adoptUncheckedRecords();
      this.openReport = {
        blocks,
        index: r.index,
        reason: r.reason,
        scannedFrom: r.scannedFrom,
        recordsScanned: r.recordsScanned,
        bytesScanned: r.bytesScanned,
        tornTail: r.tornTail,
        peerEntries: this.peers.size,
        groupEntries: this.groups.size,
        elapsedMs: Date.now() - started,
      };
    } catch (err) {
      this.lock?.release();
      throw err;
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
      dropHeadsBelow(this.peers, result.firstId);
      dropHeadsBelow(this.groups, result.firstId);
    }
    return result;
  }

  /** Enters a record into the indexes (Go: execMessage). */
  private applyRecord(id: number, msg: RawMessage): void {
    replayQueueEntry(this.peers, this.groups, id, msg);
  }

  /** The folder's epoch history (`epoch_history`), loaded at open; replication decides when epochs begin. */
  get epochs(): EpochHistory {
    if (!this.epochHistory) throw new Error('storage is not open');
    return this.epochHistory;
  }

  // ---- index lookups -------------------------------------------------------------------------------

  private findPeer(appid: bigint, uid: bigint): number {
    return this.peers.find(int64Hi(appid), int64Lo(appid), int64Hi(uid), int64Lo(uid));
  }

  private findGroup(appid: bigint, gid: bigint): number {
    return this.groups.find(int64Hi(appid), int64Lo(appid), int64Hi(gid), int64Lo(gid));
  }

  /** last_id and last_peer_id of a user (0, 0 when unknown). */
  peerHead(appid: bigint, uid: bigint): { lastId: number; lastPeerId: number } {
    const e = this.findPeer(appid, uid);
    if (e < 0) return { lastId: 0, lastPeerId: 0 };
    return {
      lastId: this.peers.getValue(e, PEER_LAST_ID),
      lastPeerId: this.peers.getValue(e, PEER_LAST_PEER_ID),
    };
  }

  /** last_id of a group (0 when unknown). */
  groupHead(appid: bigint, gid: bigint): number {
    const e = this.findGroup(appid, gid);
    return e < 0 ? 0 : this.groups.getValue(e, GROUP_LAST_ID);
  }

  /** Message id the queue entry `entryId` points at, from the cached delta or by reading the entry. */
  private entryMsgId(table: IdTable, e: number, entryId: number): number {
    if (entryId < this.files.firstId) return 0;
    const delta = table.getAux(e);
    if (delta > 0) return entryId - delta;
    const rec = this.files.read(entryId);
    const msgId =
      rec.cmd === Cmd.GROUP_IM_LIST
        ? decodeGroupEntry(rec.body)?.msgid
        : decodeOfflineEntry(rec.cmd, rec.body)?.msgid;
    if (msgId === undefined) {
      throw new CorruptRecordError(
        blockFileName(this.files.blockOf(entryId)),
        this.files.offsetOf(entryId),
        `expected a queue entry, found ${cmdName(rec.cmd)}`,
      );
    }
    table.setAux(e, msgIdDelta(entryId, msgId));
    return msgId;
  }

  get peerCount(): number {
    return this.peers.size;
  }

  get groupCount(): number {
    return this.groups.size;
  }

  get indexBytes(): { peer: number; group: number } {
    return { peer: this.peers.byteSize, group: this.groups.byteSize };
  }

  // ---- saves ---------------------------------------------------------------------------------------

  private checkSave(cmd: number, body: Buffer): void {
    if (this.closed) throw new StorageInputError('storage is closed');
    const problem = saveBodyProblem(cmd, body);
    if (problem) throw new StorageInputError(problem);
  }

  /** Stages the message record; returns its id. */
  private stageMessage(cmd: number, body: Buffer): number {
    const id = this.files.reserve(recordSize(body.length));
    writeRecord(this.files.stagingBuffer, this.files.stagingOffsetOf(id), {
      cmd,
      seq: 0,
      version: DEFAULT_MESSAGE_VERSION,
      flag: 0,
      body,
    });
    return id;
  }

  private stageFrame(id: number, bodySize: number, cmd: number, flag: number): number {
    const buf = this.files.stagingBuffer;
    const off = this.files.stagingOffsetOf(id);
    buf.writeUInt32BE(MAGIC, off);
    writeMessageHeader(buf, off + 4, bodySize, 0, cmd, 0, flag);
    buf.writeUInt32BE(MAGIC, off + 16 + bodySize);
    return off + 16;
  }

  /** Stages a user's queue entry for message `msgId`; returns the entry id. Index not yet updated. */
  private stagePeerEntry(
    appid: bigint,
    uid: bigint,
    deviceId: bigint,
    msgId: number,
    group: boolean,
    head: { lastId: number; lastPeerId: number },
  ): number {
    const id = this.files.reserve(ENTRY_RECORD_SIZE);
    const off = this.stageFrame(id, OFFLINE_V2_BODY_SIZE, Cmd.OFFLINE_V2, group ? MESSAGE_FLAG_GROUP : 0);
    writeOfflineV2Body(
      this.files.stagingBuffer,
      off,
      appid,
      uid,
      msgId,
      deviceId,
      head.lastId,
      head.lastPeerId,
    );
    return id;
  }

  private setPeerHead(appid: bigint, uid: bigint, entryId: number, msgId: number, group: boolean): void {
    const e = this.peers.upsert(int64Hi(appid), int64Lo(appid), int64Hi(uid), int64Lo(uid));
    this.peers.setValue(e, PEER_LAST_ID, entryId);
    if (!group) this.peers.setValue(e, PEER_LAST_PEER_ID, entryId);
    this.peers.setAux(e, msgIdDelta(entryId, msgId));
  }

  private prevPeerMsgId(appid: bigint, uid: bigint): number {
    const e = this.findPeer(appid, uid);
    return e < 0 ? 0 : this.entryMsgId(this.peers, e, this.peers.getValue(e, PEER_LAST_ID));
  }

  /** Runs a staged write: commits it, or drops what was staged when anything throws. */
  private write<T>(stage: () => T): T {
    try {
      const result = stage();
      this.files.commit();
      return result;
    } catch (err) {
      this.files.discardStaged();
      throw err;
    }
  }

  /** Stores a message in a user's queue. Returns its id and the id of the user's previous message. */
  savePeerMessage(appid: bigint, uid: bigint, deviceId: bigint, cmd: number, body: Buffer): SaveResult {
    this.checkSave(cmd, body);
    const group = cmd === Cmd.GROUP_IM;
    const head = this.peerHead(appid, uid);
    const prevMsgId = this.prevPeerMsgId(appid, uid);
    const { msgId, entryId } = this.write(() => {
      const msgId = this.stageMessage(cmd, body);
      const entryId = this.stagePeerEntry(appid, uid, deviceId, msgId, group, head);
      return { msgId, entryId };
    });
    this.setPeerHead(appid, uid, entryId, msgId, group);
    return { msgId, prevMsgId };
  }

  /**
   * Stores one message once and enters it into every member's queue (a normal group's fan-out).
   * Returns, per member in order, the message id and that member's previous message id.
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
    const group = cmd === Cmd.GROUP_IM;
    const heads = new Map<bigint, { lastId: number; lastPeerId: number }>();
    const results: SaveResult[] = [];
    const entries = this.write(() => {
      const msgId = this.stageMessage(cmd, body);
      const out: number[] = [];
      for (const uid of members) {
        // A member listed twice gets two entries chained one after the other, as two saves would.
        const head = heads.get(uid) ?? this.peerHead(appid, uid);
        const prevMsgId = heads.has(uid) ? msgId : this.prevPeerMsgId(appid, uid);
        const entryId = this.stagePeerEntry(appid, uid, deviceId, msgId, group, head);
        heads.set(uid, { lastId: entryId, lastPeerId: group ? head.lastPeerId : entryId });
        results.push({ msgId, prevMsgId });
        out.push(entryId);
      }
      return { msgId, out };
    });
    members.forEach((uid, i) => this.setPeerHead(appid, uid, entries.out[i], entries.msgId, group));
    return results;
  }

  /** Stores a super-group message in the group's queue. */
  saveGroupMessage(appid: bigint, gid: bigint, deviceId: bigint, cmd: number, body: Buffer): SaveResult {
    this.checkSave(cmd, body);
    const ge = this.findGroup(appid, gid);
    const lastId = ge < 0 ? 0 : this.groups.getValue(ge, GROUP_LAST_ID);
    const prevMsgId = ge < 0 ? 0 : this.entryMsgId(this.groups, ge, lastId);
    const { msgId, entryId } = this.write(() => {
      const msgId = this.stageMessage(cmd, body);
      const entryId = this.files.reserve(GROUP_ENTRY_RECORD_SIZE);
      const off = this.stageFrame(entryId, GROUP_ENTRY_BODY_SIZE, Cmd.GROUP_IM_LIST, 0);
      writeGroupEntryBody(this.files.stagingBuffer, off, appid, msgId, gid, deviceId, lastId);
      return { msgId, entryId };
    });
    const e = this.groups.upsert(int64Hi(appid), int64Lo(appid), int64Hi(gid), int64Lo(gid));
    this.groups.setValue(e, GROUP_LAST_ID, entryId);
    this.groups.setAux(e, msgIdDelta(entryId, msgId));
    return { msgId, prevMsgId };
  }

  /** The id the next record will get (a slave's cursor). */
  get nextId(): number {
    return this.files.nextId;
  }

  /** Resolves once everything written before `id` is on disk (group commit). */
  whenDurable(id: number = this.files.nextId): Promise<void> {
    return this.files.whenDurable(id);
  }

  // ---- reads ---------------------------------------------------------------------------------------

  private corrupt(id: number, reason: string): CorruptRecordError {
    return new CorruptRecordError(blockFileName(this.files.blockOf(id)), this.files.offsetOf(id), reason);
  }

  private readPeerEntry(appid: bigint, uid: bigint, id: number) {
    const rec = this.files.read(id);
    const entry = decodeOfflineEntry(rec.cmd, rec.body);
    if (!entry)
      throw this.corrupt(
        id,
        `expected a user queue entry, found ${cmdName(rec.cmd)} (${rec.body.length} bytes)`,
      );
    if (entry.appid !== appid || entry.receiver !== uid) {
      throw this.corrupt(
        id,
        `queue entry of ${entry.appid}:${entry.receiver} found in the chain of ${appid}:${uid}`,
      );
    }
    return entry;
  }

  private readGroupEntry(appid: bigint, gid: bigint, id: number) {
    const rec = this.files.read(id);
    const entry = rec.cmd === Cmd.GROUP_IM_LIST ? decodeGroupEntry(rec.body) : null;
    if (!entry)
      throw this.corrupt(
        id,
        `expected a group queue entry, found ${cmdName(rec.cmd)} (${rec.body.length} bytes)`,
      );
    if (entry.appid !== appid || entry.gid !== gid) {
      throw this.corrupt(
        id,
        `group entry of ${entry.appid}:${entry.gid} found in the chain of ${appid}:${gid}`,
      );
    }
    return entry;
  }

  private toHistory(msgId: number, deviceId: bigint, rec: RawMessage): HistoryMessage {
    return { msgId, deviceId, cmd: rec.cmd, raw: replyBody(rec.cmd, rec.version, rec.body) };
  }

  /**
   * Messages of a user newer than `lastMsgId`, newest first, at most `limit`; after `groupLimit`
   * messages only one-to-one ones. lastMsgId in the answer is the user's newest message id.
   */
  syncMessage(appid: bigint, uid: bigint, sinceMsgId: number): SyncResult {
    const messages: HistoryMessage[] = [];
    let lastMsgId = 0;
    let hasMore = false;
    let probe = 0;
    let id = this.peerHead(appid, uid).lastId;
    const firstId = this.files.firstId;
    // A chain that reaches a block deleted by retention ends there: nothing older exists.
    while (id >= firstId) {
      const entry = this.readPeerEntry(appid, uid, id);
      if (lastMsgId === 0) lastMsgId = entry.msgid;
      if (entry.msgid <= sinceMsgId || entry.msgid < firstId) break;
      const rec = this.files.read(entry.msgid);
      if (SYNC_CMDS.has(rec.cmd)) {
        if (messages.length >= this.limit) {
          hasMore = true;
          break;
        }
        messages.push(this.toHistory(entry.msgid, entry.deviceId, rec));
      } else if (messages.length >= this.limit && ++probe > HAS_MORE_PROBE) {
        hasMore = true;
        break;
      }
      id = this.groupLimit > 0 && messages.length >= this.groupLimit ? entry.prevPeerMsgid : entry.prevMsgid;
    }
    return { messages, lastMsgId, hasMore };
  }

  /**
   * Messages of a super group newer than `lastMsgId`, newest first, at most 100. With lastMsgId 0 the
   * walk stops at the first group IM older than `timestamp` (the member's join time).
   */
  syncGroupMessage(appid: bigint, gid: bigint, sinceMsgId: number, timestamp: number): SyncResult {
    const messages: HistoryMessage[] = [];
    let lastMsgId = 0;
    let hasMore = false;
    let id = this.groupHead(appid, gid);
    const firstId = this.files.firstId;
    while (id >= firstId) {
      const entry = this.readGroupEntry(appid, gid, id);
      if (lastMsgId === 0) lastMsgId = entry.msgid;
      if (entry.msgid === 0 || entry.msgid <= sinceMsgId || entry.msgid < firstId) break;
      const rec = this.files.read(entry.msgid);
      if (sinceMsgId === 0 && rec.cmd === Cmd.GROUP_IM) {
        const im = decodeImBody(rec.body, rec.version);
        if (!im) throw this.corrupt(entry.msgid, 'group IM body is too short');
        if (im.timestamp < timestamp) break;
      }
      if (messages.length >= GROUP_SYNC_LIMIT) {
        hasMore = true;
        break;
      }
      messages.push(this.toHistory(entry.msgid, entry.deviceId, rec));
      id = entry.prevMsgid;
    }
    return { messages, lastMsgId, hasMore };
  }

  /** The newest `limit` messages of a user (not MSG_SYSTEM), newest first. */
  getLatestMessages(appid: bigint, uid: bigint, limit: number): HistoryMessage[] {
    if (!Number.isInteger(limit) || limit < 1)
      throw new StorageInputError(`limit must be at least 1, got ${limit}`);
    const messages: HistoryMessage[] = [];
    let id = this.peerHead(appid, uid).lastId;
    const firstId = this.files.firstId;
    while (id >= firstId && messages.length < limit) {
      const entry = this.readPeerEntry(appid, uid, id);
      if (entry.msgid < firstId) break;
      const rec = this.files.read(entry.msgid);
      if (LATEST_CMDS.has(rec.cmd)) messages.push(this.toHistory(entry.msgid, entry.deviceId, rec));
      id = entry.prevMsgid;
    }
    return messages;
  }

  /** 1 when the user has a message newer than `sinceMsgId` that the user did not send, else 0. */
  getNewCount(appid: bigint, uid: bigint, sinceMsgId: number): 0 | 1 {
    let id = this.peerHead(appid, uid).lastId;
    let walked = 0;
    const firstId = this.files.firstId;
    while (id >= firstId && walked++ < this.limit) {
      const entry = this.readPeerEntry(appid, uid, id);
      if (entry.msgid === 0 || entry.msgid <= sinceMsgId || entry.msgid < firstId) return 0;
      const rec = this.files.read(entry.msgid);
      if (SYNC_CMDS.has(rec.cmd) && !this.isSender(rec, appid, uid)) return 1;
      id = entry.prevMsgid;
    }
    return 0;
  }

  private isSender(rec: RawMessage, appid: bigint, uid: bigint): boolean {
    if (rec.cmd === Cmd.IM || rec.cmd === Cmd.GROUP_IM) {
      return decodeImBody(rec.body, rec.version)?.sender === uid;
    }
    if (rec.cmd === Cmd.CUSTOMER) {
      const c = decodeCustomerBody(rec.body);
      return c !== null && c.customerAppid === appid && c.customerId === uid;
    }
    if (rec.cmd === Cmd.CUSTOMER_SUPPORT) {
      const c = decodeCustomerBody(rec.body);
      return c !== null && this.kefuAppid === appid && c.sellerId === uid;
    }
    return false;
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
    const size = recordSize(msg.body.length);
    const startsNextBlock =
      this.files.blockOf(id) === this.files.writeBlock + 1 && this.files.offsetOf(id) === BLOCK_HEADER_SIZE;
    if (id !== this.files.nextId && !startsNextBlock) {
      throw new StorageInputError(
        `replicated record ${id} does not follow the log end ${this.files.nextId}: refusing to leave a gap`,
      );
    }
    this.write(() => {
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
      this.write(() => {
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
        adopt: (peers, groups, savedLogEnd) => {
          this.peers = peers;
          this.groups = groups;
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
    this.peers.clear();
    this.groups.clear();
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
        const peer = this.peers.snapshot();
        const group = this.groups.snapshot();
        await this.files.whenDurable(logEnd);
        await saveIndexFiles(this.options.root, peer, group, {
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

/** Sets to 0 every index value that points below `firstId` (into a block retention deleted). */
function dropHeadsBelow(table: IdTable, firstId: number): void {
  for (let e = 0; e < table.size; e++) {
    for (let v = 0; v < table.valuesPerEntry; v++) {
      const id = table.getValue(e, v);
      if (id !== 0 && id < firstId) {
        table.setValue(e, v, 0);
        if (v === 0) table.setAux(e, 0);
      }
    }
  }
}
