/**
 * The one rule by which a record enters the indexes (Go: execMessage), shared by rebuild, repair,
 * replication and the operator tools so they can never disagree.
 */
import { Cmd, MESSAGE_FLAG_GROUP } from '../format/constants.js';
import { readId } from '../format/int64.js';
import type { RawMessage } from '../format/record.js';
import type { IdTable } from './id-table.js';

/** Value slots: peer table [last_id, last_peer_id], group table [last_id]. */
export const PEER_LAST_ID = 0;
export const PEER_LAST_PEER_ID = 1;
export const GROUP_LAST_ID = 0;

/** entryId - msgId when it fits the table's uint32 aux slot (0: unknown). */
export function msgIdDelta(entryId: number, msgId: number): number {
  const d = entryId - msgId;
  return msgId > 0 && d > 0 && d <= 0xffff_ffff ? d : 0;
}

/** Enters record `id` into the peer or group table when it is a queue entry; other records are ignored. */
export function replayQueueEntry(peers: IdTable, groups: IdTable, id: number, msg: RawMessage): void {
  const body = msg.body;
  if (msg.cmd === Cmd.OFFLINE_V2 || msg.cmd === Cmd.OFFLINE) {
    if (body.length < 32) return;
    const e = peers.upsert(
      body.readUInt32BE(0),
      body.readUInt32BE(4),
      body.readUInt32BE(8),
      body.readUInt32BE(12),
    );
    peers.setValue(e, PEER_LAST_ID, id);
    // A group-flagged entry leaves last_peer_id where it was (the one-to-one chain skips it).
    const groupFlagged = msg.cmd === Cmd.OFFLINE_V2 && (msg.flag & MESSAGE_FLAG_GROUP) !== 0;
    if (!groupFlagged) peers.setValue(e, PEER_LAST_PEER_ID, id);
    peers.setAux(e, msgIdDelta(id, readId(body, 16)));
  } else if (msg.cmd === Cmd.GROUP_IM_LIST) {
    if (body.length < 40) return;
    const e = groups.upsert(
      body.readUInt32BE(0),
      body.readUInt32BE(4),
      body.readUInt32BE(24),
      body.readUInt32BE(28),
    );
    groups.setValue(e, GROUP_LAST_ID, id);
    groups.setAux(e, msgIdDelta(id, readId(body, 16)));
  }
}
