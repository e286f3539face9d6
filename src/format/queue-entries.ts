/**
 * Queue records of both GoBelieve stores, read through one shape. Pure functions, big-endian.
 *
 *   v2 (Go ims 2.0):   MSG_OFFLINE_V2 (250, 48 bytes), MSG_OFFLINE (254, older), MSG_GROUP_IM_LIST (252)
 *   v4 (newest Go):    MSG_OFFLINE_V4 (248) and MSG_GROUP_OFFLINE (247), both 64 bytes:
 *                      appid, receiver (uid or gid), msgid, device_id, seq_id, prev_msgid,
 *                      prev_peer_msgid, prev_batch_msgid (all int64)
 *
 * v2 entries carry no sequence number and no batch link: `seq` and `prevBatchMsgid` read as 0.
 */
import { decodeGroupEntry, decodeOfflineEntry } from './bodies.js';
import { Cmd, MESSAGE_FLAG_GROUP } from './constants.js';
import { readId, writeId } from './int64.js';

export const V4_QUEUE_BODY_SIZE = 64;

/** Which table a queue record belongs to: a user's queue or a super group's. */
export type QueueFamily = 'peer' | 'group';

export interface QueueEntry {
  family: QueueFamily;
  appid: bigint;
  /** uid for a user's queue, gid for a super group's. */
  owner: bigint;
  msgid: number;
  deviceId: bigint;
  /** Position in its queue counted from 1 (v4), 0 for a v2 entry. */
  seq: number;
  prevMsgid: number;
  /** Previous entry that is not a group message (user queues; 0 for groups). */
  prevPeerMsgid: number;
  /** Previous batch mark (v4), 0 for a v2 entry. */
  prevBatchMsgid: number;
  /** The entry is for a group message and stays out of the one-to-one chain. */
  groupFlagged: boolean;
}

/** The queue record kinds of each format. */
export const V2_QUEUE_CMDS: ReadonlySet<number> = new Set([Cmd.OFFLINE_V2, Cmd.OFFLINE, Cmd.GROUP_IM_LIST]);
export const V4_QUEUE_CMDS: ReadonlySet<number> = new Set([Cmd.OFFLINE_V4, Cmd.GROUP_OFFLINE]);
/** Queue record kinds some GoBelieve version wrote that ims cannot read (MSG_OFFLINE_V3). */
export const UNREADABLE_QUEUE_CMDS: ReadonlySet<number> = new Set([Cmd.OFFLINE_V3]);

export function isQueueCmd(cmd: number): boolean {
  return V2_QUEUE_CMDS.has(cmd) || V4_QUEUE_CMDS.has(cmd);
}

/** Decodes any queue record ims reads; null for other records or a body too short for its kind. */
export function decodeQueueEntry(cmd: number, flag: number, body: Buffer): QueueEntry | null {
  if (cmd === Cmd.OFFLINE_V4 || cmd === Cmd.GROUP_OFFLINE) {
    if (body.length < V4_QUEUE_BODY_SIZE) return null;
    const peer = cmd === Cmd.OFFLINE_V4;
    return {
      family: peer ? 'peer' : 'group',
      appid: body.readBigInt64BE(0),
      owner: body.readBigInt64BE(8),
      msgid: readId(body, 16),
      deviceId: body.readBigInt64BE(24),
      seq: readId(body, 32),
      prevMsgid: readId(body, 40),
      prevPeerMsgid: readId(body, 48),
      prevBatchMsgid: readId(body, 56),
      groupFlagged: peer && (flag & MESSAGE_FLAG_GROUP) !== 0,
    };
  }
  if (cmd === Cmd.GROUP_IM_LIST) {
    const g = decodeGroupEntry(body);
    if (!g) return null;
    return {
      family: 'group',
      appid: g.appid,
      owner: g.gid,
      msgid: g.msgid,
      deviceId: g.deviceId,
      seq: 0,
      prevMsgid: g.prevMsgid,
      prevPeerMsgid: 0,
      prevBatchMsgid: 0,
      groupFlagged: false,
    };
  }
  const o = decodeOfflineEntry(cmd, body);
  if (!o) return null;
  return {
    family: 'peer',
    appid: o.appid,
    owner: o.receiver,
    msgid: o.msgid,
    deviceId: o.deviceId,
    seq: 0,
    prevMsgid: o.prevMsgid,
    prevPeerMsgid: o.prevPeerMsgid,
    prevBatchMsgid: 0,
    groupFlagged: cmd === Cmd.OFFLINE_V2 && (flag & MESSAGE_FLAG_GROUP) !== 0,
  };
}

/** Writes a 64-byte v4 queue body (MSG_OFFLINE_V4 or MSG_GROUP_OFFLINE) at `offset`. */
export function writeV4QueueBody(
  target: Buffer,
  offset: number,
  e: Omit<QueueEntry, 'family' | 'groupFlagged'>,
): void {
  target.writeBigInt64BE(e.appid, offset);
  target.writeBigInt64BE(e.owner, offset + 8);
  writeId(target, e.msgid, offset + 16);
  target.writeBigInt64BE(e.deviceId, offset + 24);
  writeId(target, e.seq, offset + 32);
  writeId(target, e.prevMsgid, offset + 40);
  writeId(target, e.prevPeerMsgid, offset + 48);
  writeId(target, e.prevBatchMsgid, offset + 56);
}
