/**
 * Queues of the newest GoBelieve store (queue_format v4), byte for byte with its ims at 4fa4897:
 *   SavePeerMessage:  message record (id M, version 2), then MSG_OFFLINE_V4 (flag 0x04 for a group IM)
 *                     {appid, uid, M, device, seq, prev, prev_peer, prev_batch}
 *   SaveGroupMessage: message record (id M), then MSG_GROUP_OFFLINE {appid, gid, M, device, seq, prev, 0,
 *                     prev_batch}
 *   SavePeerGroupMessage: one whole save per member (each member gets its own copy and message id).
 * Every queue counts its entries (seq from 1); every 1000th is a batch mark linked to the previous one,
 * so a sync can find its page and a count needs no walk.
 *
 * A folder upgraded from v2 (`ims upgrade`) also holds v2 entries below its switch point: they count in
 * the sequence (replay counts them), v4 chains link back into them, and the walks below read both.
 */
import {
  BLOCK_HEADER_SIZE,
  Cmd,
  LATEST_CMDS,
  MESSAGE_FLAG_GROUP,
  SYNC_CMDS,
  QUEUE_BATCH_SIZE,
  V4_LATEST_CMDS,
  V4_MESSAGE_VERSION,
  V4_SYNC_CMDS,
} from '../../format/constants.js';
import {
  V4_QUEUE_BODY_SIZE,
  decodeQueueEntry,
  writeV4QueueBody,
  type QueueEntry,
} from '../../format/queue-entries.js';
import { recordSize, type RawMessage } from '../../format/record.js';
import { V4_GROUP, V4_PEER } from '../queue-replay.js';
import { CorruptRecordError } from '../storage-errors.js';
import { QueueStore, type HistoryMessage, type SaveResult, type SyncResult } from './queue-store.js';

const QUEUE_RECORD_SIZE = recordSize(V4_QUEUE_BODY_SIZE);

/** A queue's index entry: newest message id, newest entry, newest one-to-one entry, batch mark, count. */
interface Head {
  lastMsgId: number;
  lastId: number;
  lastPeerId: number;
  lastBatchId: number;
  lastSeq: number;
}

const EMPTY_HEAD: Head = { lastMsgId: 0, lastId: 0, lastPeerId: 0, lastBatchId: 0, lastSeq: 0 };

export class V4Queues extends QueueStore {
  readonly format = 'v4' as const;
  private peerHead(appid: bigint, uid: bigint): Head {
    const e = this.findPeer(appid, uid);
    if (e < 0) return EMPTY_HEAD;
    const t = this.tables.peers;
    return {
      lastMsgId: t.getValue(e, V4_PEER.lastMsgId),
      lastId: t.getValue(e, V4_PEER.lastId),
      lastPeerId: t.getValue(e, V4_PEER.lastPeerId),
      lastBatchId: t.getValue(e, V4_PEER.lastBatchId),
      lastSeq: t.getValue(e, V4_PEER.lastSeq),
    };
  }

  private groupHead(appid: bigint, gid: bigint): Head {
    const e = this.findGroup(appid, gid);
    if (e < 0) return EMPTY_HEAD;
    const t = this.tables.groups;
    return {
      lastMsgId: t.getValue(e, V4_GROUP.lastMsgId),
      lastId: t.getValue(e, V4_GROUP.lastId),
      lastPeerId: 0,
      lastBatchId: t.getValue(e, V4_GROUP.lastBatchId),
      lastSeq: t.getValue(e, V4_GROUP.lastSeq),
    };
  }

  /**
   * A queue's head as reads see it: entries at or above the read end left out, its count lowered by
   * one per entry left out (every entry counts one), and its newest message id that of the new head.
   */
  private visibleHead(family: 'peer' | 'group', appid: bigint, owner: bigint, head: Head): Head {
    const end = this.readEnd();
    if (head.lastId < end) return head;
    const last = this.visibleEntry(family, appid, owner, head.lastId, 'prevMsgid', end);
    const lastId = last.id;
    return {
      lastMsgId:
        lastId > 0 && lastId >= this.files.firstId ? this.readEntry(family, appid, owner, lastId).msgid : 0,
      lastId,
      lastPeerId:
        family === 'peer'
          ? this.visibleEntry(family, appid, owner, head.lastPeerId, 'prevPeerMsgid', end).id
          : 0,
      lastBatchId: this.visibleEntry(family, appid, owner, head.lastBatchId, 'prevBatchMsgid', end).id,
      lastSeq: Math.max(0, head.lastSeq - last.skipped),
    };
  }

  private readPeerHead(appid: bigint, uid: bigint): Head {
    return this.visibleHead('peer', appid, uid, this.peerHead(appid, uid));
  }

  // ---- saves ---------------------------------------------------------------------------------------

  /** Stages a message and its queue record after `head`; returns the ids and the queue's new head. */
  private stageSave(
    cmd: number,
    body: Buffer,
    queueCmd: number,
    appid: bigint,
    owner: bigint,
    deviceId: bigint,
    head: Head,
  ): { msgId: number; next: Head } {
    const msgId = this.stageMessage(cmd, body, V4_MESSAGE_VERSION);
    const groupIm = queueCmd === Cmd.OFFLINE_V4 && cmd === Cmd.GROUP_IM;
    const entryId = this.files.reserve(QUEUE_RECORD_SIZE);
    const off = this.stageFrame(entryId, V4_QUEUE_BODY_SIZE, queueCmd, groupIm ? MESSAGE_FLAG_GROUP : 0);
    const seq = head.lastSeq + 1;
    writeV4QueueBody(this.files.stagingBuffer, off, {
      appid,
      owner,
      msgid: msgId,
      deviceId,
      seq,
      prevMsgid: head.lastId,
      prevPeerMsgid: queueCmd === Cmd.OFFLINE_V4 ? head.lastPeerId : 0,
      prevBatchMsgid: head.lastBatchId,
    });
    return {
      msgId,
      next: {
        lastMsgId: msgId,
        lastId: entryId,
        lastPeerId: groupIm ? head.lastPeerId : entryId,
        lastBatchId: seq % QUEUE_BATCH_SIZE === 0 ? entryId : head.lastBatchId,
        lastSeq: seq,
      },
    };
  }

  private setPeerHead(appid: bigint, uid: bigint, h: Head): void {
    const t = this.tables.peers;
    const e = this.upsertPeer(appid, uid);
    t.setValue(e, V4_PEER.lastMsgId, h.lastMsgId);
    t.setValue(e, V4_PEER.lastId, h.lastId);
    t.setValue(e, V4_PEER.lastPeerId, h.lastPeerId);
    t.setValue(e, V4_PEER.lastBatchId, h.lastBatchId);
    t.setValue(e, V4_PEER.lastSeq, h.lastSeq);
  }

  savePeerMessage(appid: bigint, uid: bigint, deviceId: bigint, cmd: number, body: Buffer): SaveResult {
    const head = this.peerHead(appid, uid);
    const { msgId, next } = this.write(() =>
      this.stageSave(cmd, body, Cmd.OFFLINE_V4, appid, uid, deviceId, head),
    );
    this.setPeerHead(appid, uid, next);
    return { msgId, prevMsgId: head.lastMsgId };
  }

  savePeerGroupMessage(
    appid: bigint,
    members: readonly bigint[],
    deviceId: bigint,
    cmd: number,
    body: Buffer,
  ): SaveResult[] {
    const heads = new Map<bigint, Head>();
    const results = this.write(() =>
      members.map((uid) => {
        const head = heads.get(uid) ?? this.peerHead(appid, uid);
        const { msgId, next } = this.stageSave(cmd, body, Cmd.OFFLINE_V4, appid, uid, deviceId, head);
        heads.set(uid, next);
        return { msgId, prevMsgId: head.lastMsgId };
      }),
    );
    for (const [uid, head] of heads) this.setPeerHead(appid, uid, head);
    return results;
  }

  saveGroupMessage(appid: bigint, gid: bigint, deviceId: bigint, cmd: number, body: Buffer): SaveResult {
    const head = this.groupHead(appid, gid);
    const { msgId, next } = this.write(() =>
      this.stageSave(cmd, body, Cmd.GROUP_OFFLINE, appid, gid, deviceId, head),
    );
    const t = this.tables.groups;
    const e = this.upsertGroup(appid, gid);
    t.setValue(e, V4_GROUP.lastMsgId, next.lastMsgId);
    t.setValue(e, V4_GROUP.lastId, next.lastId);
    t.setValue(e, V4_GROUP.lastBatchId, next.lastBatchId);
    t.setValue(e, V4_GROUP.lastSeq, next.lastSeq);
    return { msgId, prevMsgId: head.lastMsgId };
  }

  // ---- reads ---------------------------------------------------------------------------------------

  /**
   * Whether SyncMessage (or GetLatestMessage) returns a message of this kind: v4's kinds, and below an
   * upgrade's switch point also v2's (CustomerMessage 24/25), so no message synced before an upgrade
   * stops being synced after it.
   */
  private syncable(msgId: number, cmd: number, latest: boolean): boolean {
    if ((latest ? V4_LATEST_CMDS : V4_SYNC_CMDS).has(cmd)) return true;
    return msgId < this.settings.v2Below && (latest ? LATEST_CMDS : SYNC_CMDS).has(cmd);
  }

  /**
   * One page of a user's messages newer than `sinceMsgId`, newest first, oldest page first (Go's
   * LoadHistoryMessagesV3): with at least limit/1000 batch marks above the sync key the walk starts at
   * the limit/1000-th nearest one, else at the newest entry; it stops at the key or after `limit`
   * messages. lastMsgId is the first entry walked; hasMore says the walk did not start at the newest.
   */
  syncMessage(appid: bigint, uid: bigint, sinceMsgId: number): SyncResult {
    const head = this.readPeerHead(appid, uid);
    // An unknown user (or one whose queue retention deleted) has no entry to walk.
    if (head.lastId === 0) return { messages: [], lastMsgId: 0, hasMore: false };
    const { limit, hardLimit } = this.settings;
    const firstId = this.files.firstId;
    const batchCount = Math.max(1, Math.floor(limit / QUEUE_BATCH_SIZE));
    const hardBatchCount = Math.floor(hardLimit / QUEUE_BATCH_SIZE);

    // Batch marks above the key, nearest the head first.
    const marks: number[] = [];
    for (let b = head.lastBatchId; b > sinceMsgId && b >= firstId;) {
      const mark = this.readEntry('peer', appid, uid, b);
      if (mark.msgid <= sinceMsgId) break;
      marks.push(b);
      b = mark.prevBatchMsgid;
      if (hardBatchCount > 0 && marks.length >= hardBatchCount) break;
    }
    let start = head.lastId;
    // Past hard_limit, the page holds one-to-one messages only (they matter most).
    let peerOnly = false;
    if (hardBatchCount > 0 && marks.length >= hardBatchCount && hardBatchCount >= batchCount) {
      start = marks[marks.length - batchCount];
      peerOnly = true;
    } else if (marks.length >= batchCount) {
      start = marks[marks.length - batchCount];
    }
    let page = this.walkPage(appid, uid, start, sinceMsgId, peerOnly);
    if (start === head.lastId && page.more) {
      // More than a page lies above the key with too few marks to find its start (entries written
      // before an upgrade from v2 have none): count back from the newest so the oldest page comes
      // first and nothing is skipped. Go would answer the newest page and lose the rest.
      start = this.entryAbove(appid, uid, head.lastId, sinceMsgId, limit);
      page = this.walkPage(appid, uid, start, sinceMsgId, false);
    }
    return {
      messages: page.messages,
      lastMsgId: page.lastMsgId,
      hasMore: page.firstEntry > 0 && page.firstEntry < head.lastId,
    };
  }

  /** Walks from entry `start` down to the key or `limit` messages; `more` when entries above the key remain. */
  private walkPage(
    appid: bigint,
    uid: bigint,
    start: number,
    sinceMsgId: number,
    peerOnly: boolean,
  ): { messages: HistoryMessage[]; lastMsgId: number; firstEntry: number; more: boolean } {
    const messages: HistoryMessage[] = [];
    const firstId = this.files.firstId;
    let lastMsgId = 0;
    let firstEntry = 0;
    let id = start;
    while (id >= firstId && id > 0) {
      const entry = this.readEntry('peer', appid, uid, id);
      if (lastMsgId === 0) {
        lastMsgId = entry.msgid;
        firstEntry = id;
      }
      if (entry.msgid <= sinceMsgId || entry.msgid < firstId) break;
      const rec = this.files.read(entry.msgid);
      id = peerOnly ? entry.prevPeerMsgid : entry.prevMsgid;
      if (this.syncable(entry.msgid, rec.cmd, false)) {
        messages.push(this.reply(entry.msgid, entry.deviceId, rec));
        if (messages.length >= this.settings.limit) {
          const more = id >= firstId && id > 0 && this.readEntry('peer', appid, uid, id).msgid > sinceMsgId;
          return { messages, lastMsgId, firstEntry, more };
        }
      }
    }
    return { messages, lastMsgId, firstEntry, more: false };
  }

  /** The entry `count` entries below the newest of those above the key, counted from the oldest. */
  private entryAbove(appid: bigint, uid: bigint, headId: number, sinceMsgId: number, count: number): number {
    const ids: number[] = [];
    const firstId = this.files.firstId;
    for (let id = headId; id >= firstId && id > 0;) {
      const entry = this.readEntry('peer', appid, uid, id);
      if (entry.msgid <= sinceMsgId || entry.msgid < firstId) break;
      ids.push(id);
      id = entry.prevMsgid;
    }
    return ids[Math.max(0, ids.length - count)];
  }

  /** The newest `limit` messages of a user (not MSG_SYSTEM); as Go, at least one even for limit < 1. */
  getLatestMessages(appid: bigint, uid: bigint, limit: number): HistoryMessage[] {
    const messages: HistoryMessage[] = [];
    const firstId = this.files.firstId;
    for (let id = this.readPeerHead(appid, uid).lastId; id >= firstId && id > 0;) {
      const entry = this.readEntry('peer', appid, uid, id);
      if (entry.msgid < firstId) break;
      const rec = this.files.read(entry.msgid);
      if (this.syncable(entry.msgid, rec.cmd, true)) {
        messages.push(this.reply(entry.msgid, entry.deviceId, rec));
        if (messages.length >= limit) break;
      }
      id = entry.prevMsgid;
    }
    return messages;
  }

  /**
   * Messages of a super group newer than `sinceMsgId`, newest first, at most 100 and never `hasMore`.
   * With sinceMsgId 0 the walk stops at the first group IM older than `timestamp` (the join time).
   */
  syncGroupMessage(appid: bigint, gid: bigint, sinceMsgId: number, timestamp: number): SyncResult {
    const page = this.walkGroup(
      appid,
      gid,
      this.visibleHead('group', appid, gid, this.groupHead(appid, gid)).lastId,
      sinceMsgId,
      timestamp,
    );
    return { ...page, hasMore: false };
  }

  /**
   * Exactly how many entries the user's queue holds after the one for message `sinceMsgId`: the
   * queue's count minus that entry's sequence number. 0 for anything that is not this user's message
   * id; the whole count for 0.
   */
  getNewCount(appid: bigint, uid: bigint, sinceMsgId: number): number {
    const head = this.readPeerHead(appid, uid);
    if (sinceMsgId === 0) return head.lastSeq;
    if (head.lastId === 0) return 0;
    const found = this.entryOfMessage(appid, uid, sinceMsgId);
    if (found === null) return 0;
    const { id, entry } = found;
    const seq = entry.seq > 0 ? entry.seq : this.seqOfUncountedEntry(appid, uid, head, id);
    return seq > 0 && seq <= head.lastSeq ? head.lastSeq - seq : 0;
  }

  /**
   * The user's queue entry (and its id) for message `msgId`: a v4 save writes it right after the message
   * (the first record of the next block when the message ends one). A v2 fan-out wrote one entry per
   * member after its message, so those are searched too. Null when `msgId` is not this user's message.
   */
  private entryOfMessage(
    appid: bigint,
    uid: bigint,
    msgId: number,
  ): { id: number; entry: QueueEntry } | null {
    const files = this.files;
    if (!Number.isSafeInteger(msgId) || msgId < files.firstId || msgId >= files.nextId) return null;
    let id: number | null = msgId;
    let rec = this.probe(msgId);
    for (let entries = 0; rec && id !== null; entries++) {
      id = this.nextRecordId(id, rec);
      if (id === null) return null;
      rec = this.probe(id);
      const entry = rec ? decodeQueueEntry(rec.cmd, rec.flag, rec.body) : null;
      if (!entry || entry.msgid !== msgId || entry.family !== 'peer') return null;
      if (entry.appid === appid && entry.owner === uid) return { id, entry };
      // Only a v2 fan-out puts several entries after one message.
      if (rec!.cmd === Cmd.OFFLINE_V4 || entries > 100_000) return null;
    }
    return null;
  }

  /** The record after `rec` at `id`, continuing in the next block when it ends this one. */
  private nextRecordId(id: number, rec: RawMessage): number | null {
    const files = this.files;
    const next = id + recordSize(rec.body.length);
    const block = files.blockOf(id);
    if (block < files.writeBlock && files.offsetOf(next) >= files.sealedBlockSize(block)) {
      return block + 1 <= files.writeBlock ? files.idOf(block + 1, BLOCK_HEADER_SIZE) : null;
    }
    return next < files.nextId ? next : null;
  }

  /**
   * Reads a record at a position a client named: bytes that are not a record there mean "not a
   * message id" (null), as in Go. A checksum mismatch of a real record stays an error.
   */
  private probe(id: number): RawMessage | null {
    try {
      return this.files.read(id);
    } catch (err) {
      if (err instanceof CorruptRecordError && !err.reason.startsWith('checksum mismatch')) return null;
      throw err;
    }
  }

  /**
   * Sequence number of a v2 entry (written before an upgrade): counted down from the oldest batch mark
   * above it, or from the newest entry when there is none.
   */
  private seqOfUncountedEntry(appid: bigint, uid: bigint, head: Head, entryId: number): number {
    let id = head.lastId;
    let seq = head.lastSeq;
    for (let b = head.lastBatchId; b > entryId;) {
      const mark = this.readEntry('peer', appid, uid, b);
      id = b;
      seq = mark.seq;
      b = mark.prevBatchMsgid;
    }
    const firstId = this.files.firstId;
    while (id > entryId && id >= firstId) {
      id = this.readEntry('peer', appid, uid, id).prevMsgid;
      seq--;
    }
    return id === entryId ? seq : 0;
  }
}
