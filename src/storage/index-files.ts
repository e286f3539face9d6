/**
 * Loading and saving the index files (either format's, see format/index-file.ts) plus `index_state`,
 * our own small record of the log position each save reflects (Go ignores it). Saves are atomic: temp
 * file, fsync, rename, fsync of the folder.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { indexFileSizeProblem, type IndexFileSpec, type IndexKind } from '../format/index-file.js';
import { readId, writeId } from '../format/int64.js';
import { fsyncDirectory } from './block-files.js';
import { ID_TABLE_CHUNK_SIZE, type IdTable, type IdTableSnapshot } from './id-table.js';

export const INDEX_STATE_FILE = 'index_state';

export type IndexLoad =
  { ok: true; entries: number; maxId: number } | { ok: false; reason: string; missing: boolean };

/**
 * Fills `table` from an index file; ids below `firstId` (in blocks deleted by retention) load as 0. Any
 * id at or past `logEnd` makes the file unusable (it is ahead of the log). `maxId` is the newest queue
 * record any entry names.
 */
export function loadIndexFile(
  root: string,
  spec: IndexFileSpec,
  table: IdTable,
  logEnd: number,
  firstId = 0,
): IndexLoad {
  const { name, entrySize, idSlots, lastIdSlot } = spec;
  const file = path.join(root, name);
  let data: Buffer;
  try {
    data = fs.readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return {
      ok: false,
      missing: code === 'ENOENT',
      reason: code === 'ENOENT' ? `${name} is missing` : `${name}: ${(err as Error).message}`,
    };
  }
  const sizeProblem = indexFileSizeProblem(data.length, entrySize);
  if (sizeProblem) return { ok: false, missing: false, reason: `${name}: ${sizeProblem}` };
  let maxId = 0;
  const values = table.valuesPerEntry;
  for (let off = 0; off < data.length; off += entrySize) {
    const e = table.upsert(
      data.readUInt32BE(off),
      data.readUInt32BE(off + 4),
      data.readUInt32BE(off + 8),
      data.readUInt32BE(off + 12),
    );
    for (let v = 0; v < values; v++) {
      const value = readId(data, off + 16 + 8 * v);
      const isId = idSlots.includes(v);
      if (!(value >= 0) || (isId && value >= logEnd)) {
        table.clear();
        const what = isId ? 'id' : 'count';
        return {
          ok: false,
          missing: false,
          reason: `${name}: entry ${off / entrySize} holds ${what} ${Number.isNaN(value) ? 'out of range' : value}${isId ? `, past the end of the log (${logEnd})` : ''}`,
        };
      }
      // A head in a block retention deleted: that queue's older part is gone, as after a rebuild.
      table.setValue(e, v, isId && value < firstId ? 0 : value);
      if (v === lastIdSlot && value > maxId) maxId = value;
    }
    table.setAux(e, 0);
  }
  return { ok: true, entries: data.length / entrySize, maxId };
}

export interface IndexState {
  /** The log position (next id) when the saved index files were snapshotted. */
  logEnd: number;
  blockSize: number;
  peerEntries: number;
  groupEntries: number;
  savedAt: string;
}

export function readIndexState(root: string): IndexState | null {
  try {
    const s = JSON.parse(fs.readFileSync(path.join(root, INDEX_STATE_FILE), 'utf8')) as IndexState;
    return Number.isSafeInteger(s.logEnd) && Number.isSafeInteger(s.blockSize) ? s : null;
  } catch {
    return null;
  }
}

async function writeSnapshot(file: string, snap: IdTableSnapshot, entrySize: number): Promise<void> {
  const fh = await fs.promises.open(file, 'w', 0o644);
  try {
    const perChunk = ID_TABLE_CHUNK_SIZE;
    const buf = Buffer.allocUnsafe(perChunk * entrySize);
    const values = snap.valuesPerEntry;
    let position = 0;
    for (let c = 0; c * perChunk < snap.count; c++) {
      const n = Math.min(perChunk, snap.count - c * perChunk);
      const keys = snap.keys[c];
      const vals = snap.values[c];
      for (let i = 0; i < n; i++) {
        const off = i * entrySize;
        buf.writeUInt32BE(keys[i * 4], off);
        buf.writeUInt32BE(keys[i * 4 + 1], off + 4);
        buf.writeUInt32BE(keys[i * 4 + 2], off + 8);
        buf.writeUInt32BE(keys[i * 4 + 3], off + 12);
        for (let v = 0; v < values; v++) writeId(buf, vals[i * values + v], off + 16 + 8 * v);
      }
      const { bytesWritten } = await fh.write(buf, 0, n * entrySize, position);
      if (bytesWritten !== n * entrySize) throw new Error(`short write to ${file}`);
      position += n * entrySize;
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Writes both index files and index_state atomically (each: temp, fsync, rename; then the folder). */
export async function saveIndexFiles(
  root: string,
  specs: Record<IndexKind, IndexFileSpec>,
  peer: IdTableSnapshot,
  group: IdTableSnapshot,
  state: Omit<IndexState, 'savedAt'>,
): Promise<void> {
  const peerTmp = path.join(root, `${specs.peer.name}_t`);
  const groupTmp = path.join(root, `${specs.group.name}_t`);
  await writeSnapshot(peerTmp, peer, specs.peer.entrySize);
  await writeSnapshot(groupTmp, group, specs.group.entrySize);
  const stateTmp = path.join(root, `${INDEX_STATE_FILE}_t`);
  await fs.promises.writeFile(
    stateTmp,
    JSON.stringify({ ...state, savedAt: new Date().toISOString() }) + '\n',
    {
      flush: true,
    },
  );
  await fs.promises.rename(peerTmp, path.join(root, specs.peer.name));
  await fs.promises.rename(groupTmp, path.join(root, specs.group.name));
  // index_state goes last: a crash before it leaves an older logEnd, which only makes repair longer.
  await fs.promises.rename(stateTmp, path.join(root, INDEX_STATE_FILE));
  fsyncDirectory(root);
}
