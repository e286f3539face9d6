/**
 * The one rule per queue format by which a record enters the indexes (Go: execMessage), shared by
 * rebuild, repair, replication and the operator tools so they can never disagree.
 */
import { Cmd, MESSAGE_FLAG_GROUP, QUEUE_BATCH_SIZE } from '../format/constants.js';
import {
  INDEX_FILE_SPECS,
  type IndexFileSpec,
  type IndexKind,
  type QueueFormatName,
} from '../format/index-file.js';
import { readId } from '../format/int64.js';
import { decodeQueueEntry } from '../format/queue-entries.js';
import type { RawMessage } from '../format/record.js';
import { IdTable } from './id-table.js';

/** Value slots of the v2 tables: peer [last_id, last_peer_id], group [last_id] (as in Go 2.0's files). */
export const PEER_LAST_ID = 0;
export const PEER_LAST_PEER_ID = 1;
export const GROUP_LAST_ID = 0;

/** Value slots of the v4 tables, in the order of peer_index.v3 and group_index.v2. */
export const V4_PEER = { lastMsgId: 0, lastId: 1, lastPeerId: 2, lastBatchId: 3, lastSeq: 4 } as const;
export const V4_GROUP = { lastMsgId: 0, lastId: 1, lastBatchId: 2, lastSeq: 3 } as const;

/** entryId - msgId when it fits the table's uint32 aux slot (0: unknown). */
export function msgIdDelta(entryId: number, msgId: number): number {
  const d = entryId - msgId;
  return msgId > 0 && d > 0 && d <= 0xffff_ffff ? d : 0;
}

export type QueueReplay = (peers: IdTable, groups: IdTable, id: number, msg: RawMessage) => void;

/** Go 2.0: enters record `id` into the peer or group table when it is a v2 queue entry. */
function replayV2(peers: IdTable, groups: IdTable, id: number, msg: RawMessage): void {
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

/**
 * Newest Go: every queue entry counts one in its queue's sequence, and every 1000th becomes the batch
 * mark (Go counts as it replays; the records' own numbers agree with that count in any whole log). v2 entries (a folder upgraded from v2 holds them below its switch point) count too, so the
 * sequence continues across the switch. Replaying a record the index already reflects is skipped:
 * a count must not grow twice.
 */
function replayV4(peers: IdTable, groups: IdTable, id: number, msg: RawMessage): void {
  const entry = decodeQueueEntry(msg.cmd, msg.flag, msg.body);
  if (!entry) return;
  const table = entry.family === 'peer' ? peers : groups;
  const slots = entry.family === 'peer' ? V4_PEER : V4_GROUP;
  const e = table.upsert(
    body32(msg.body, 0),
    body32(msg.body, 4),
    // v2 group entries keep the gid at offset 24; every other kind at 8.
    body32(msg.body, msg.cmd === Cmd.GROUP_IM_LIST ? 24 : 8),
    body32(msg.body, msg.cmd === Cmd.GROUP_IM_LIST ? 28 : 12),
  );
  if (id <= table.getValue(e, slots.lastId)) return;
  // The first entry of a queue the replay meets starts the count at its own sequence number (a rebuild
  // after retention deleted the oldest blocks still counts the whole queue); every later one counts one
  // more, so a damaged number in one record stays one record's problem.
  const before = table.getValue(e, slots.lastSeq);
  const seq = before === 0 && entry.seq > 0 ? entry.seq : before + 1;
  table.setValue(e, slots.lastMsgId, entry.msgid);
  table.setValue(e, slots.lastId, id);
  table.setValue(e, slots.lastSeq, seq);
  if (seq % QUEUE_BATCH_SIZE === 0 && V4_CMDS_WITH_BATCH.has(msg.cmd))
    table.setValue(e, slots.lastBatchId, id);
  if (entry.family === 'peer' && !entry.groupFlagged) table.setValue(e, V4_PEER.lastPeerId, id);
}

/** Only v4 records carry a batch link, so only they can be batch marks. */
const V4_CMDS_WITH_BATCH: ReadonlySet<number> = new Set([Cmd.OFFLINE_V4, Cmd.GROUP_OFFLINE]);

function body32(body: Buffer, offset: number): number {
  return body.readUInt32BE(offset);
}

export const QUEUE_REPLAY: Record<QueueFormatName, QueueReplay> = { v2: replayV2, v4: replayV4 };

/** Values per entry of each format's tables. */
export const TABLE_VALUES: Record<QueueFormatName, { peer: number; group: number }> = {
  v2: { peer: 2, group: 1 },
  v4: { peer: 5, group: 4 },
};

/** The v2 rule, kept under its old name for callers that only know Go 2.0 folders. */
export const replayQueueEntry: QueueReplay = replayV2;

/** What the index of a folder looks like in a format: its files, its replay rule, its tables. */
export interface QueueIndexLayout {
  format: QueueFormatName;
  specs: Record<IndexKind, IndexFileSpec>;
  replay: QueueReplay;
  newTables(): { peers: IdTable; groups: IdTable };
}

export function queueIndexLayout(format: QueueFormatName): QueueIndexLayout {
  const values = TABLE_VALUES[format];
  return {
    format,
    specs: INDEX_FILE_SPECS[format],
    replay: QUEUE_REPLAY[format],
    newTables: () => ({ peers: new IdTable(values.peer), groups: new IdTable(values.group) }),
  };
}
