/**
 * The seam between the storage engine and a queue format. `MessageStore` owns the folder (blocks,
 * index tables, recovery, replication); a `QueueStore` for the folder's format writes messages with
 * their queue records and walks the queues to answer reads. One subclass per format (v2-queues.ts,
 * v4-queues.ts); the record and index codecs live in src/format.
 */
import { Cmd, DEFAULT_MESSAGE_VERSION, GROUP_SYNC_LIMIT, MAGIC, cmdName } from '../../format/constants.js';
import { decodeImBody, replyBody, saveBodyProblem } from '../../format/bodies.js';
import type { QueueFormatName } from '../../format/index-file.js';
import { int64Hi, int64Lo } from '../../format/int64.js';
import { decodeQueueEntry, type QueueEntry, type QueueFamily } from '../../format/queue-entries.js';
import { isFiller } from '../../format/filler.js';
import { recordSize, writeMessageHeader, writeRecord, type RawMessage } from '../../format/record.js';
import { blockFileName, writeStaged, type BlockFiles } from '../block-files.js';
import type { IdTable } from '../id-table.js';
import { CorruptRecordError } from '../storage-errors.js';

const CHAIN_END = {
  msgid: 0,
  deviceId: 0n,
  seq: 0,
  prevMsgid: 0,
  prevPeerMsgid: 0,
  prevBatchMsgid: 0,
  groupFlagged: false,
} as const;

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

/** The index tables, replaced as a whole when the log is cut or restarted. */
export interface QueueTables {
  peers: IdTable;
  groups: IdTable;
}

export interface QueueSettings {
  /** Most messages one SyncMessage returns (Go default 3000). */
  limit: number;
  /** v2: after this many messages SyncMessage follows only the one-to-one chain (0: no limit). */
  groupLimit: number;
  /** v4: most messages a user's whole backlog may cost before only one-to-one ones are sent (0: none). */
  hardLimit: number;
  /** App id of the customer-service app (v2: decides who sent a MSG_CUSTOMER_SUPPORT). */
  kefuAppid: bigint;
  /** v4 folder upgraded from v2: records below this id were written under v2's rules (0: none). */
  v2Below: number;
}

export abstract class QueueStore {
  abstract readonly format: QueueFormatName;
  /**
   * Reads answer only below this log position (the acknowledged end, Kafka's high watermark): a record
   * above it may still be cut by a failover, and a device that synced it would keep its id as a sync
   * key that another message later takes. Saves are not affected. Infinity: everything written.
   */
  readEnd: () => number = () => Infinity;

  constructor(
    protected readonly files: BlockFiles,
    protected readonly tables: QueueTables,
    protected readonly settings: QueueSettings,
  ) {}

  /** Why a client's body cannot be saved as `cmd` in this format, or null. */
  saveProblem(cmd: number, body: Buffer): string | null {
    return saveBodyProblem(cmd, body, this.format);
  }
  abstract savePeerMessage(
    appid: bigint,
    uid: bigint,
    deviceId: bigint,
    cmd: number,
    body: Buffer,
  ): SaveResult;
  abstract savePeerGroupMessage(
    appid: bigint,
    members: readonly bigint[],
    deviceId: bigint,
    cmd: number,
    body: Buffer,
  ): SaveResult[];
  abstract saveGroupMessage(
    appid: bigint,
    gid: bigint,
    deviceId: bigint,
    cmd: number,
    body: Buffer,
  ): SaveResult;
  abstract syncMessage(appid: bigint, uid: bigint, sinceMsgId: number): SyncResult;
  abstract syncGroupMessage(appid: bigint, gid: bigint, sinceMsgId: number, timestamp: number): SyncResult;
  abstract getLatestMessages(appid: bigint, uid: bigint, limit: number): HistoryMessage[];
  abstract getNewCount(appid: bigint, uid: bigint, sinceMsgId: number): number;

  /** The index entry of a user's / a group's queue, slot by slot as in the format's index file. */
  peerIndexEntry(appid: bigint, uid: bigint): number[] {
    return this.indexEntry(this.tables.peers, this.findPeer(appid, uid));
  }

  groupIndexEntry(appid: bigint, gid: bigint): number[] {
    return this.indexEntry(this.tables.groups, this.findGroup(appid, gid));
  }

  private indexEntry(table: IdTable, e: number): number[] {
    return Array.from({ length: table.valuesPerEntry }, (_, v) => (e < 0 ? 0 : table.getValue(e, v)));
  }

  // ---- shared by both formats ------------------------------------------------------------------------

  protected findPeer(appid: bigint, uid: bigint): number {
    return this.tables.peers.find(int64Hi(appid), int64Lo(appid), int64Hi(uid), int64Lo(uid));
  }

  protected findGroup(appid: bigint, gid: bigint): number {
    return this.tables.groups.find(int64Hi(appid), int64Lo(appid), int64Hi(gid), int64Lo(gid));
  }

  protected upsertPeer(appid: bigint, uid: bigint): number {
    return this.tables.peers.upsert(int64Hi(appid), int64Lo(appid), int64Hi(uid), int64Lo(uid));
  }

  protected upsertGroup(appid: bigint, gid: bigint): number {
    return this.tables.groups.upsert(int64Hi(appid), int64Lo(appid), int64Hi(gid), int64Lo(gid));
  }

  protected write<T>(stage: () => T): T {
    return writeStaged(this.files, stage);
  }

  /** Stages a message record; returns its id. */
  protected stageMessage(cmd: number, body: Buffer, version = DEFAULT_MESSAGE_VERSION): number {
    const id = this.files.reserve(recordSize(body.length));
    writeRecord(this.files.stagingBuffer, this.files.stagingOffsetOf(id), {
      cmd,
      seq: 0,
      version,
      flag: 0,
      body,
    });
    return id;
  }

  /** Stages the framing of a queue record (version 0) and returns where its body goes. */
  protected stageFrame(id: number, bodySize: number, cmd: number, flag: number): number {
    const buf = this.files.stagingBuffer;
    const off = this.files.stagingOffsetOf(id);
    buf.writeUInt32BE(MAGIC, off);
    writeMessageHeader(buf, off + 4, bodySize, 0, cmd, 0, flag);
    buf.writeUInt32BE(MAGIC, off + 16 + bodySize);
    return off + 16;
  }

  /**
   * A queue's newest entry below the read end, from its newest entry `lastId`, following `link` (the
   * entries above the read end are the newest of the chain: they are cut away from the head).
   */
  protected visibleEntry(
    family: QueueFamily,
    appid: bigint,
    owner: bigint,
    lastId: number,
    link: 'prevMsgid' | 'prevPeerMsgid' | 'prevBatchMsgid',
    end: number,
  ): { id: number; skipped: number } {
    let id = lastId;
    let skipped = 0;
    while (id >= end && id > 0) {
      id = this.readEntry(family, appid, owner, id)[link];
      skipped++;
    }
    return { id, skipped };
  }

  protected corrupt(id: number, reason: string): CorruptRecordError {
    return new CorruptRecordError(blockFileName(this.files.blockOf(id)), this.files.offsetOf(id), reason);
  }

  /**
   * Reads the queue entry at `id` of the queue (appid, owner); anything else there is corruption. A
   * filler (`ims repair --damaged fill` wrote it over a damaged record) reads as an entry of message
   * id 0 without links, so every walk ends there, as Go's ends at a record that is not an entry.
   */
  protected readEntry(family: QueueFamily, appid: bigint, owner: bigint, id: number): QueueEntry {
    const rec = this.files.read(id);
    if (isFiller(rec)) return { ...CHAIN_END, family, appid, owner };
    const entry = decodeQueueEntry(rec.cmd, rec.flag, rec.body);
    if (!entry || entry.family !== family) {
      throw this.corrupt(
        id,
        `expected a ${family === 'peer' ? 'user' : 'group'} queue entry, found ${cmdName(rec.cmd)} (${rec.body.length} bytes)`,
      );
    }
    if (entry.appid !== appid || entry.owner !== owner) {
      throw this.corrupt(
        id,
        `${family === 'peer' ? 'queue' : 'group'} entry of ${entry.appid}:${entry.owner} found in the chain of ${appid}:${owner}`,
      );
    }
    return entry;
  }

  /**
   * A super group's messages newer than `sinceMsgId` from entry `headId`, newest first, at most 100 (Go's
   * GROUP_OFFLINE_LIMIT); `hasMore` says a 101st exists. With sinceMsgId 0 the walk stops at the first
   * group IM older than `joinedAt`. lastMsgId is the newest entry's message id.
   */
  protected walkGroup(
    appid: bigint,
    gid: bigint,
    headId: number,
    sinceMsgId: number,
    joinedAt: number,
  ): SyncResult {
    const messages: HistoryMessage[] = [];
    const firstId = this.files.firstId;
    let lastMsgId = 0;
    let hasMore = false;
    for (let id = headId; id >= firstId && id > 0;) {
      const entry = this.readEntry('group', appid, gid, id);
      if (lastMsgId === 0) lastMsgId = entry.msgid;
      if (entry.msgid === 0 || entry.msgid <= sinceMsgId || entry.msgid < firstId) break;
      const rec = this.files.read(entry.msgid);
      id = entry.prevMsgid;
      if (isFiller(rec)) continue; // a message repair filled: skipped
      if (this.beforeJoin(entry.msgid, rec, sinceMsgId, joinedAt)) break;
      if (messages.length >= GROUP_SYNC_LIMIT) {
        hasMore = true;
        break;
      }
      messages.push(this.reply(entry.msgid, entry.deviceId, rec));
    }
    return { messages, lastMsgId, hasMore };
  }

  /** The message as a client receives it (an old version-0 IM body re-encoded, as Go does). */
  protected reply(msgId: number, deviceId: bigint, rec: RawMessage): HistoryMessage {
    return this.toHistory(msgId, deviceId, rec, replyBody(rec.cmd, rec.version, rec.body));
  }

  /** With no sync key, a group IM older than the member's join time ends a super group's walk. */
  protected beforeJoin(msgId: number, rec: RawMessage, sinceMsgId: number, joinedAt: number): boolean {
    if (sinceMsgId !== 0 || rec.cmd !== Cmd.GROUP_IM) return false;
    const im = decodeImBody(rec.body, rec.version);
    if (!im) throw this.corrupt(msgId, 'group IM body is too short');
    return im.timestamp < joinedAt;
  }

  protected toHistory(
    msgId: number,
    deviceId: bigint,
    rec: RawMessage,
    body: Buffer = rec.body,
  ): HistoryMessage {
    return { msgId, deviceId, cmd: rec.cmd, raw: body };
  }
}
