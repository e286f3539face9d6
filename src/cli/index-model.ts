/**
 * The peer and group indexes as the tools see them: rebuilt from the records (the same rules as the
 * engine's replay) or read from the index files, so the two can be compared entry by entry. Everything
 * here follows the folder's queue format (v2: Go ims 2.0, v4: the newest GoBelieve store) through the
 * engine's own layout, found as the engine finds it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  indexFileSizeProblem,
  type IndexFileSpec,
  type IndexKind,
  type QueueFormatName,
} from '../format/index-file.js';
import { int64FromParts, int64Hi, int64Lo, readId } from '../format/int64.js';
import { V2_QUEUE_CMDS, V4_QUEUE_CMDS } from '../format/queue-entries.js';
import type { RawMessage } from '../format/record.js';
import {
  GROUP_LAST_ID,
  PEER_LAST_ID,
  PEER_LAST_PEER_ID,
  V4_GROUP,
  V4_PEER,
  queueIndexLayout,
  type QueueIndexLayout,
} from '../storage/queue-replay.js';
import { IdTable } from '../storage/id-table.js';
import { INDEX_STATE_FILE, type IndexState } from '../storage/index-files.js';
import { queueFormatOf, type FolderQueueFormat } from '../storage/queues/folder-queue-format.js';
import type { FolderReader } from './folder-reader.js';

export type { IndexKind };

/** The queue format the tools read a folder in, and how they found it. */
export interface ToolQueueFormat {
  format: QueueFormatName;
  /** What showed it ("MSG_OFFLINE_V4 queue records", "its queue_format file", or "no queue records"). */
  evidence: string;
  /** Set when the folder was switched to its format (`ims upgrade`, a slave following its master). */
  switched?: { from: QueueFormatName; since: number; at: string | null };
}

export interface FolderLayout {
  queueFormat: ToolQueueFormat;
  layout: QueueIndexLayout;
  /** Which slot of each table holds which head (-1: the format has none). */
  slots: Record<IndexKind, HeadSlots>;
  /** The queue format records at `id` are written in (below a switch point: the old one). */
  formatAt(id: number): QueueFormatName;
}

/**
 * The folder's queue format, as the engine decides it (queueFormatOf: its queue_format file, else the
 * log's first queue record, else its index files); an empty folder reads as v2, the engine's default.
 * Throws, as the engine does, for queue records ims cannot read (MSG_OFFLINE_V3).
 */
export function folderLayout(reader: FolderReader): FolderLayout {
  const held: FolderQueueFormat = queueFormatOf(reader.root, () => reader.firstQueueCmd());
  const format = held.format ?? 'v2';
  const r = held.record;
  const switched = r?.from ? { from: r.from, since: r.since, at: r.switchedAt ?? null } : undefined;
  return {
    queueFormat: { format, evidence: held.evidence, ...(switched ? { switched } : {}) },
    layout: queueIndexLayout(format),
    slots: HEAD_SLOTS[format],
    formatAt: (id) => (switched && id < switched.since ? switched.from : format),
  };
}

/** The queue record kinds written in each format. */
export const QUEUE_CMDS_OF: Record<QueueFormatName, ReadonlySet<number>> = {
  v2: V2_QUEUE_CMDS,
  v4: V4_QUEUE_CMDS,
};

/** One line naming a folder's queue format and its switch point, if any. */
export function describeQueueFormat(q: ToolQueueFormat): string {
  const sw = q.switched;
  return (
    `queue format ${q.format} (${q.evidence})` +
    (sw ? `, switched from ${sw.from} at id ${sw.since}${sw.at ? ` (${sw.at})` : ''}` : '')
  );
}

/** Names of an index entry's values, in file order (camelCase; snake_case as Go names them). */
export const INDEX_VALUE_NAMES: Record<QueueFormatName, Record<IndexKind, readonly string[]>> = {
  v2: {
    peer: slotNames({ lastId: PEER_LAST_ID, lastPeerId: PEER_LAST_PEER_ID }),
    group: slotNames({ lastId: GROUP_LAST_ID }),
  },
  v4: { peer: slotNames(V4_PEER), group: slotNames(V4_GROUP) },
};

function slotNames(slots: Record<string, number>): string[] {
  const names: string[] = [];
  for (const [name, slot] of Object.entries(slots)) names[slot] = name;
  return names;
}

const GO_VALUE_NAMES: Record<string, string> = {
  lastMsgId: 'last_msgid',
  lastId: 'last_id',
  lastPeerId: 'last_peer_id',
  lastBatchId: 'last_batch_id',
  lastSeq: 'last_seq_id',
};

/** An index value's name as Go's index files and the fixtures' manifests spell it. */
export function goValueName(name: string): string {
  return GO_VALUE_NAMES[name] ?? name;
}

/** A table's head slots: the newest entry, the newest one-to-one entry, the batch mark and the count. */
export interface HeadSlots {
  lastId: number;
  lastPeerId: number;
  lastBatchId: number;
  lastSeq: number;
}

function headSlots(names: readonly string[]): HeadSlots {
  return {
    lastId: names.indexOf('lastId'),
    lastPeerId: names.indexOf('lastPeerId'),
    lastBatchId: names.indexOf('lastBatchId'),
    lastSeq: names.indexOf('lastSeq'),
  };
}

const HEAD_SLOTS: Record<QueueFormatName, Record<IndexKind, HeadSlots>> = {
  v2: { peer: headSlots(INDEX_VALUE_NAMES.v2.peer), group: headSlots(INDEX_VALUE_NAMES.v2.group) },
  v4: { peer: headSlots(INDEX_VALUE_NAMES.v4.peer), group: headSlots(INDEX_VALUE_NAMES.v4.group) },
};

/** A value of a table entry by slot; 0 for a slot the format lacks or an entry that does not exist. */
export function slotValue(table: IdTable, e: number, slot: number): number {
  return e < 0 || slot < 0 ? 0 : table.getValue(e, slot);
}

export class RebuiltIndex {
  readonly peers: IdTable;
  readonly groups: IdTable;

  constructor(private readonly layout: QueueIndexLayout) {
    ({ peers: this.peers, groups: this.groups } = layout.newTables());
  }

  table(kind: IndexKind): IdTable {
    return kind === 'peer' ? this.peers : this.groups;
  }

  /** Enters a record by the engine's own replay rule for the folder's format. */
  apply(id: number, msg: RawMessage): void {
    this.layout.replay(this.peers, this.groups, id, msg);
  }
}

export function keyOf(table: IdTable, e: number): [bigint, bigint] {
  return [
    int64FromParts(table.keyWord(e, 0), table.keyWord(e, 1)),
    int64FromParts(table.keyWord(e, 2), table.keyWord(e, 3)),
  ];
}

/** The table key words of (appid, uid or gid). */
export function wordsOf(a: bigint, b: bigint): [number, number, number, number] {
  return [int64Hi(a), int64Lo(a), int64Hi(b), int64Lo(b)];
}

export interface IndexFileEntry {
  key: [number, number, number, number];
  values: number[];
}

export type IndexFileRead =
  | { status: 'missing' }
  | { status: 'unreadable'; reason: string }
  | { status: 'truncated'; reason: string; size: number }
  | { status: 'read'; entries: IndexFileEntry[]; duplicates: number; maxId: number; size: number };

/**
 * Reads an index file without judging it against the log. `maxId` is the newest queue record any entry
 * names (its last_id), as the engine takes it.
 */
export function readIndexFile(root: string, spec: IndexFileSpec): IndexFileRead {
  const { name, entrySize, values, lastIdSlot } = spec;
  let data: Buffer;
  try {
    data = fs.readFileSync(path.join(root, name));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { status: 'missing' };
    return { status: 'unreadable', reason: (err as Error).message };
  }
  const sizeProblem = indexFileSizeProblem(data.length, entrySize);
  if (sizeProblem) return { status: 'truncated', reason: sizeProblem, size: data.length };
  const entries: IndexFileEntry[] = [];
  const seen = new IdTable(0);
  let duplicates = 0;
  let maxId = 0;
  for (let off = 0; off < data.length; off += entrySize) {
    const key: [number, number, number, number] = [
      data.readUInt32BE(off),
      data.readUInt32BE(off + 4),
      data.readUInt32BE(off + 8),
      data.readUInt32BE(off + 12),
    ];
    const before = seen.size;
    seen.upsert(...key);
    if (seen.size === before) duplicates++;
    const vals: number[] = [];
    for (let v = 0; v < values; v++) {
      const id = readId(data, off + 16 + 8 * v);
      vals.push(id);
      if (v === lastIdSlot && id > maxId) maxId = id;
    }
    entries.push({ key, values: vals });
  }
  return { status: 'read', entries, duplicates, maxId, size: data.length };
}

export type StateRead =
  { status: 'missing' } | { status: 'bad'; reason: string } | { status: 'read'; state: IndexState };

export function readStateFile(root: string): StateRead {
  let text: string;
  try {
    text = fs.readFileSync(path.join(root, INDEX_STATE_FILE), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { status: 'missing' };
    return { status: 'bad', reason: (err as Error).message };
  }
  try {
    const s = JSON.parse(text) as IndexState;
    if (!Number.isSafeInteger(s.logEnd) || !Number.isSafeInteger(s.blockSize)) {
      return { status: 'bad', reason: 'logEnd or blockSize is not an integer' };
    }
    return { status: 'read', state: s };
  } catch (err) {
    return { status: 'bad', reason: `not JSON: ${(err as Error).message}` };
  }
}
