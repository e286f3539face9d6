/**
 * The peer and group indexes as the tools see them: rebuilt from the records (the same rules as the
 * engine's replay) or read from the index files, so the two can be compared entry by entry.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { INDEX_FILES, indexFileSizeProblem, type IndexKind } from '../format/index-file.js';
import { int64FromParts, readId } from '../format/int64.js';
import type { RawMessage } from '../format/record.js';
import { replayQueueEntry } from '../storage/queue-replay.js';
import { IdTable } from '../storage/id-table.js';
import { INDEX_STATE_FILE, type IndexState } from '../storage/index-files.js';

export { INDEX_FILES, type IndexKind };

export class RebuiltIndex {
  readonly peers = new IdTable(2);
  readonly groups = new IdTable(1);

  table(kind: IndexKind): IdTable {
    return kind === 'peer' ? this.peers : this.groups;
  }

  /** Enters a record by the engine's own replay rule. */
  apply(id: number, msg: RawMessage): void {
    replayQueueEntry(this.peers, this.groups, id, msg);
  }
}

export function keyOf(table: IdTable, e: number): [bigint, bigint] {
  return [
    int64FromParts(table.keyWord(e, 0), table.keyWord(e, 1)),
    int64FromParts(table.keyWord(e, 2), table.keyWord(e, 3)),
  ];
}

export function wordsOf(a: bigint, b: bigint): [number, number, number, number] {
  const buf = Buffer.allocUnsafe(16);
  buf.writeBigInt64BE(a, 0);
  buf.writeBigInt64BE(b, 8);
  return [buf.readUInt32BE(0), buf.readUInt32BE(4), buf.readUInt32BE(8), buf.readUInt32BE(12)];
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

/** Reads an index file without judging it against the log. */
export function readIndexFile(root: string, kind: IndexKind): IndexFileRead {
  const { name, entrySize, values } = INDEX_FILES[kind];
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
      if (id > maxId) maxId = id;
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
