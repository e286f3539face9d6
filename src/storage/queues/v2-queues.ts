/**
 * Go ims 2.0 queues (queue_format v2), byte for byte:
 *   SavePeerMessage:  message record (id M), then MSG_OFFLINE_V2 {appid, uid, M, device, prev, prev_peer}
 *   SaveGroupMessage: message record (id M), then MSG_GROUP_IM_LIST {appid, 0, M, gid, device, prev}
 * A user's index entry holds last_id (newest queue entry) and last_peer_id (newest entry that is not a
 * group message); a group's holds last_id. The message id of a head is cached in the table's aux slot.
 */
import { Cmd, LATEST_CMDS, MESSAGE_FLAG_GROUP, SYNC_CMDS, cmdName } from '../../format/constants.js';
import {
  GROUP_ENTRY_BODY_SIZE,
  OFFLINE_V2_BODY_SIZE,
  decodeCustomerBody,
  decodeImBody,
  writeGroupEntryBody,
  writeOfflineV2Body,
} from '../../format/bodies.js';
import { decodeQueueEntry } from '../../format/queue-entries.js';
import { recordSize, type RawMessage } from '../../format/record.js';
import type { IdTable } from '../id-table.js';
import { GROUP_LAST_ID, PEER_LAST_ID, PEER_LAST_PEER_ID, msgIdDelta } from '../queue-replay.js';
import { StorageInputError } from '../storage-errors.js';
import { QueueStore, type HistoryMessage, type SaveResult, type SyncResult } from './queue-store.js';

const ENTRY_RECORD_SIZE = recordSize(OFFLINE_V2_BODY_SIZE);
const GROUP_ENTRY_RECORD_SIZE = recordSize(GROUP_ENTRY_BODY_SIZE);
/** How far past the limit a sync keeps walking to learn whether more messages exist. */
const HAS_MORE_PROBE = 64;

interface PeerHead {
  lastId: number;
  lastPeerId: number;
}

export class V2Queues extends QueueStore {
  readonly format = 'v2' as const;
  private peerHead(appid: bigint, uid: bigint): PeerHead {
    const e = this.findPeer(appid, uid);
    if (e < 0) return { lastId: 0, lastPeerId: 0 };
    return {
      lastId: this.tables.peers.getValue(e, PEER_LAST_ID),
      lastPeerId: this.tables.peers.getValue(e, PEER_LAST_PEER_ID),
    };
  }

  private groupHead(appid: bigint, gid: bigint): number {
    const e = this.findGroup(appid, gid);
    return e < 0 ? 0 : this.tables.groups.getValue(e, GROUP_LAST_ID);
  }

  /** The user's head as reads see it: entries at or above the read end left out. */
  private readPeerHead(appid: bigint, uid: bigint): PeerHead {
    const head = this.peerHead(appid, uid);
    const end = this.readEnd();
    if (head.lastId < end) return head;
    return {
      lastId: this.visibleEntry('peer', appid, uid, head.lastId, 'prevMsgid', end).id,
      lastPeerId: this.visibleEntry('peer', appid, uid, head.lastPeerId, 'prevPeerMsgid', end).id,
    };
  }

  private readGroupHead(appid: bigint, gid: bigint): number {
    const lastId = this.groupHead(appid, gid);
    const end = this.readEnd();
    return lastId < end ? lastId : this.visibleEntry('group', appid, gid, lastId, 'prevMsgid', end).id;
  }

  /** Message id the queue entry `entryId` points at, from the cached delta or by reading the entry. */
  private entryMsgId(table: IdTable, e: number, entryId: number): number {
    if (entryId < this.files.firstId) return 0;
    const delta = table.getAux(e);
    if (delta > 0) return entryId - delta;
    const rec = this.files.read(entryId);
    const msgId = decodeQueueEntry(rec.cmd, rec.flag, rec.body)?.msgid;
    if (msgId === undefined) throw this.corrupt(entryId, `expected a queue entry, found ${cmdName(rec.cmd)}`);
    table.setAux(e, msgIdDelta(entryId, msgId));
    return msgId;
  }

  // ---- saves ---------------------------------------------------------------------------------------

  /** Stages a user's queue entry for message `msgId`; returns the entry id. Index not yet updated. */
  private stagePeerEntry(
    appid: bigint,
    uid: bigint,
    deviceId: bigint,
    msgId: number,
    group: boolean,
    head: PeerHead,
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
    const peers = this.tables.peers;
    const e = this.upsertPeer(appid, uid);
    peers.setValue(e, PEER_LAST_ID, entryId);
    if (!group) peers.setValue(e, PEER_LAST_PEER_ID, entryId);
    peers.setAux(e, msgIdDelta(entryId, msgId));
  }

  private prevPeerMsgId(appid: bigint, uid: bigint): number {
    const e = this.findPeer(appid, uid);
    return e < 0 ? 0 : this.entryMsgId(this.tables.peers, e, this.tables.peers.getValue(e, PEER_LAST_ID));
  }

  savePeerMessage(appid: bigint, uid: bigint, deviceId: bigint, cmd: number, body: Buffer): SaveResult {
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

  /** Go 2.0 stores a normal group's message once and enters it into every member's queue. */
  savePeerGroupMessage(
    appid: bigint,
    members: readonly bigint[],
    deviceId: bigint,
    cmd: number,
    body: Buffer,
  ): SaveResult[] {
    const group = cmd === Cmd.GROUP_IM;
    const heads = new Map<bigint, PeerHead>();
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

  saveGroupMessage(appid: bigint, gid: bigint, deviceId: bigint, cmd: number, body: Buffer): SaveResult {
    const groups = this.tables.groups;
    const ge = this.findGroup(appid, gid);
    const lastId = ge < 0 ? 0 : groups.getValue(ge, GROUP_LAST_ID);
    const prevMsgId = ge < 0 ? 0 : this.entryMsgId(groups, ge, lastId);
    const { msgId, entryId } = this.write(() => {
      const msgId = this.stageMessage(cmd, body);
      const entryId = this.files.reserve(GROUP_ENTRY_RECORD_SIZE);
      const off = this.stageFrame(entryId, GROUP_ENTRY_BODY_SIZE, Cmd.GROUP_IM_LIST, 0);
      writeGroupEntryBody(this.files.stagingBuffer, off, appid, msgId, gid, deviceId, lastId);
      return { msgId, entryId };
    });
    const e = this.upsertGroup(appid, gid);
    groups.setValue(e, GROUP_LAST_ID, entryId);
    groups.setAux(e, msgIdDelta(entryId, msgId));
    return { msgId, prevMsgId };
  }

  // ---- reads ---------------------------------------------------------------------------------------

  /**
   * Messages of a user newer than `sinceMsgId`, newest first, at most `limit`; after `groupLimit`
   * messages only one-to-one ones. lastMsgId in the answer is the user's newest message id.
   */
  syncMessage(appid: bigint, uid: bigint, sinceMsgId: number): SyncResult {
    const { limit, groupLimit } = this.settings;
    const messages: HistoryMessage[] = [];
    let lastMsgId = 0;
    let hasMore = false;
    let probe = 0;
    let id = this.readPeerHead(appid, uid).lastId;
    const firstId = this.files.firstId;
    // A chain that reaches a block deleted by retention ends there: nothing older exists.
    while (id >= firstId) {
      const entry = this.readEntry('peer', appid, uid, id);
      if (lastMsgId === 0) lastMsgId = entry.msgid;
      if (entry.msgid <= sinceMsgId || entry.msgid < firstId) break;
      const rec = this.files.read(entry.msgid);
      if (SYNC_CMDS.has(rec.cmd)) {
        if (messages.length >= limit) {
          hasMore = true;
          break;
        }
        messages.push(this.reply(entry.msgid, entry.deviceId, rec));
      } else if (messages.length >= limit && ++probe > HAS_MORE_PROBE) {
        hasMore = true;
        break;
      }
      id = groupLimit > 0 && messages.length >= groupLimit ? entry.prevPeerMsgid : entry.prevMsgid;
    }
    return { messages, lastMsgId, hasMore };
  }

  /**
   * Messages of a super group newer than `sinceMsgId`, newest first, at most 100. With sinceMsgId 0 the
   * walk stops at the first group IM older than `timestamp` (the member's join time).
   */
  syncGroupMessage(appid: bigint, gid: bigint, sinceMsgId: number, timestamp: number): SyncResult {
    return this.walkGroup(appid, gid, this.readGroupHead(appid, gid), sinceMsgId, timestamp);
  }

  /** The newest `limit` messages of a user (not MSG_SYSTEM), newest first. */
  getLatestMessages(appid: bigint, uid: bigint, limit: number): HistoryMessage[] {
    if (!Number.isInteger(limit) || limit < 1)
      throw new StorageInputError(`limit must be at least 1, got ${limit}`);
    const messages: HistoryMessage[] = [];
    let id = this.readPeerHead(appid, uid).lastId;
    const firstId = this.files.firstId;
    while (id >= firstId && messages.length < limit) {
      const entry = this.readEntry('peer', appid, uid, id);
      if (entry.msgid < firstId) break;
      const rec = this.files.read(entry.msgid);
      if (LATEST_CMDS.has(rec.cmd)) messages.push(this.reply(entry.msgid, entry.deviceId, rec));
      id = entry.prevMsgid;
    }
    return messages;
  }

  /** Go 2.0: 1 when the user has a message newer than `sinceMsgId` that the user did not send, else 0. */
  getNewCount(appid: bigint, uid: bigint, sinceMsgId: number): number {
    let id = this.readPeerHead(appid, uid).lastId;
    let walked = 0;
    const firstId = this.files.firstId;
    while (id >= firstId && walked++ < this.settings.limit) {
      const entry = this.readEntry('peer', appid, uid, id);
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
      return c !== null && this.settings.kefuAppid === appid && c.sellerId === uid;
    }
    return false;
  }
}
