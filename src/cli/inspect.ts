/**
 * `ims inspect`: prints records decoded. A user's or group's queue (newest first, each entry with the
 * message it points at), one record by id, or records in log order. Read-only. Every output names the
 * folder's queue format (v2 or v4, found as the engine finds it) and where it was switched, if it was.
 */
import { BLOCK_HEADER_SIZE } from '../format/constants.js';
import { decodeQueueEntry, isQueueCmd } from '../format/queue-entries.js';
import { isFiller } from '../format/filler.js';
import { blockFileName } from '../storage/block-files.js';
import { decodeRecordForPeople, formatRecord, type DecodedRecord } from './describe-record.js';
import { FolderReader, type BlockScan } from './folder-reader.js';
import {
  INDEX_VALUE_NAMES,
  RebuiltIndex,
  describeQueueFormat,
  folderLayout,
  readIndexFile,
  readStateFile,
  slotValue,
  goValueName,
  wordsOf,
  type FolderLayout,
} from './index-model.js';
import type { ProgressBar } from './progress.js';

export type InspectTarget =
  | { kind: 'user'; appid: bigint; id: bigint; peerOnly: boolean }
  | { kind: 'group'; appid: bigint; id: bigint }
  | { kind: 'at'; msgId: number }
  | { kind: 'log'; fromId: number | null };

export interface InspectOptions {
  blockSize: number;
  limit: number;
  json: boolean;
  rebuild: boolean;
  progress: ProgressBar;
  print: (line: string) => void;
}

interface ChainItem {
  entry: DecodedRecord | null;
  message: DecodedRecord | null;
  /**
   * The entry's position in its queue (v4): its seq, or for a v2 entry below a switch point (which
   * carries none) counted down from the queue's count while following prev_msgid.
   */
  seq?: number;
  error?: string;
}

/** Returns the exit code: 0 when found, 1 when the id or queue does not exist or is unreadable. */
export function runInspect(root: string, target: InspectTarget, options: InspectOptions): number {
  const reader = new FolderReader(root, options.blockSize);
  // Every record shown is checked against its checksum: a mismatch is reported, never its bytes.
  reader.checkReads = true;
  try {
    const folder = folderLayout(reader);
    if (!options.json) options.print(describeQueueFormat(folder.queueFormat));
    switch (target.kind) {
      case 'at':
        return inspectAt(reader, folder, target.msgId, options);
      case 'log':
        return inspectLog(reader, folder, target.fromId, options);
      default:
        return inspectQueue(reader, folder, target, options);
    }
  } finally {
    reader.close();
  }
}

function decodeAt(reader: FolderReader, id: number): { record: DecodedRecord } | { error: string } {
  const r = reader.read(id);
  if (r.kind !== 'ok') return { error: `${reader.describe(id)}: ${r.reason}` };
  return {
    record: decodeRecordForPeople(id, blockFileName(reader.blockOf(id)), reader.offsetOf(id), r.message),
  };
}

function inspectAt(reader: FolderReader, folder: FolderLayout, id: number, options: InspectOptions): number {
  const got = decodeAt(reader, id);
  if ('error' in got) {
    if (options.json)
      options.print(JSON.stringify({ id, error: got.error, queueFormat: folder.queueFormat }));
    else options.print(`no record at ${id}: ${got.error}`);
    return 1;
  }
  const rec = got.record;
  // A queue entry is shown with the message it points at.
  let target: { record: DecodedRecord } | { error: string } | null = null;
  if (isQueueCmd(rec.cmd)) {
    const msgid = rec.fields.msgid;
    if (typeof msgid === 'number') target = decodeAt(reader, msgid);
  }
  if (options.json) {
    options.print(
      JSON.stringify(
        {
          queueFormat: folder.queueFormat,
          record: rec,
          ...(target
            ? 'record' in target
              ? { pointsAt: target.record }
              : { pointsAtError: target.error }
            : {}),
        },
        null,
        2,
      ),
    );
  } else {
    options.print(formatRecord(rec));
    if (target)
      options.print(
        'record' in target
          ? `  points at:\n${formatRecord(target.record, '    ')}`
          : `  points at: ${target.error}`,
      );
  }
  return 0;
}

function inspectLog(
  reader: FolderReader,
  folder: FolderLayout,
  fromId: number | null,
  options: InspectOptions,
): number {
  const records: DecodedRecord[] = [];
  const start = fromId ?? reader.idOf(reader.blocks[0] ?? 0, BLOCK_HEADER_SIZE);
  let problem: string | null = null;
  for (const b of reader.blocks) {
    if (records.length >= options.limit) break;
    if (reader.idOf(b + 1, 0) <= start) continue;
    const from = reader.blockOf(start) === b ? reader.offsetOf(start) : BLOCK_HEADER_SIZE;
    let scan: BlockScan | null = null;
    try {
      scan = reader.scan(
        b,
        from,
        (id, msg) => {
          if (records.length >= options.limit) throw new StopScan();
          records.push(decodeRecordForPeople(id, blockFileName(b), reader.offsetOf(id), msg));
        },
        undefined,
        reader.sumsOf(b),
      );
    } catch (err) {
      if (!(err instanceof StopScan)) throw err;
    }
    if (scan?.problem) {
      problem = `${blockFileName(b)} offset ${scan.end}: ${scan.problem}`;
      break;
    }
  }
  if (options.json) {
    options.print(
      JSON.stringify(
        { queueFormat: folder.queueFormat, from: start, records, ...(problem ? { stoppedAt: problem } : {}) },
        null,
        2,
      ),
    );
  } else {
    options.print(`records from ${start} (at most ${options.limit}):`);
    for (const r of records) options.print(formatRecord(r));
    if (problem) options.print(`stopped: ${problem}`);
  }
  return records.length > 0 ? 0 : 1;
}

class StopScan extends Error {}

/**
 * The queue heads: from the index files plus a replay of the records after the position they
 * reflect (as the server starts), or rebuilt from every block (--rebuild, or unusable files).
 */
function loadHeads(
  reader: FolderReader,
  folder: FolderLayout,
  options: InspectOptions,
): { index: RebuiltIndex; source: string } {
  const root = reader.root;
  const { layout } = folder;
  if (!options.rebuild) {
    const peer = readIndexFile(root, layout.specs.peer);
    const group = readIndexFile(root, layout.specs.group);
    const state = readStateFile(root);
    if (peer.status === 'read' && group.status === 'read') {
      const index = new RebuiltIndex(layout);
      for (const [kind, read] of [
        ['peer', peer],
        ['group', group],
      ] as const) {
        const table = index.table(kind);
        for (const e of read.entries) {
          const t = table.upsert(...e.key);
          e.values.forEach((v, i) => table.setValue(t, i, v));
        }
      }
      let from: number;
      if (state.status === 'read') from = state.state.logEnd;
      else {
        const p = peer.entries.length > 0 ? peer.maxId : Infinity;
        const g = group.entries.length > 0 ? group.maxId : Infinity;
        from = Math.min(p, g);
        if (from === Infinity) from = 0;
      }
      const replayed = replay(reader, index, from, options);
      if (replayed !== null) {
        return { index, source: `index files, then ${replayed} records replayed from ${from}` };
      }
    }
  }
  const index = new RebuiltIndex(layout);
  const n = replay(reader, index, 0, options);
  return { index, source: `rebuilt from all blocks (${n ?? 0} records)` };
}

/** Applies records from `from` on; null when `from` is not a record (the index files do not fit the log). */
function replay(
  reader: FolderReader,
  index: RebuiltIndex,
  from: number,
  options: InspectOptions,
): number | null {
  let n = 0;
  if (from > 0) {
    const fb = reader.blockOf(from);
    if (!reader.blocks.includes(fb) || reader.offsetOf(from) > reader.fileSize(fb)) return null;
  }
  const first = from > 0 ? reader.blockOf(from) : (reader.blocks[0] ?? 0);
  const total = reader.blocks
    .filter((b) => b >= first)
    .reduce((s, b) => s + Math.max(0, reader.fileSize(b)), 0);
  let before = 0;
  for (const b of reader.blocks) {
    if (b < first) continue;
    const start = b === first && from > 0 ? reader.offsetOf(from) : BLOCK_HEADER_SIZE;
    const scan = reader.scan(
      b,
      start,
      (id, msg) => {
        n++;
        index.apply(id, msg);
      },
      (offset) => options.progress.update(before + offset, total, blockFileName(b)),
    );
    if (scan.problem && b === first && n === 0 && start > BLOCK_HEADER_SIZE) {
      options.progress.clear();
      return null;
    }
    before += Math.max(0, scan.fileSize);
  }
  options.progress.clear();
  return n;
}

function inspectQueue(
  reader: FolderReader,
  folder: FolderLayout,
  target: Extract<InspectTarget, { kind: 'user' | 'group' }>,
  options: InspectOptions,
): number {
  const { index, source } = loadHeads(reader, folder, options);
  const isUser = target.kind === 'user';
  const family = isUser ? 'peer' : 'group';
  const table = index.table(family);
  const slots = folder.slots[family];
  const e = table.find(...wordsOf(target.appid, target.id));
  const name = `${isUser ? 'user' : 'group'} ${target.appid}:${target.id}`;
  const peerOnly = target.kind === 'user' && target.peerOnly;
  const head = slotValue(table, e, peerOnly ? slots.lastPeerId : slots.lastId);
  // Following prev_msgid from the head, each entry is one before the last: v2 entries get their seq so.
  let counted: number | null = !peerOnly && slots.lastSeq >= 0 ? slotValue(table, e, slots.lastSeq) : null;
  const items: ChainItem[] = [];
  let next = head;
  let error: string | null = null;
  /** A filler where the chain went on: repair replaced a damaged entry there, and the walk ends. */
  let endsAtFiller: number | null = null;
  const seen = new Set<number>();
  while (next !== 0 && items.length < options.limit) {
    if (seen.has(next)) {
      error = `the chain loops back to ${next}`;
      break;
    }
    seen.add(next);
    const got = decodeAt(reader, next);
    if ('error' in got) {
      error = `entry ${next}: ${got.error}`;
      break;
    }
    const entry = got.record;
    const body = reader.read(next);
    if (body.kind !== 'ok') break;
    if (isFiller(body.message)) {
      endsAtFiller = next;
      break;
    }
    const qe = decodeQueueEntry(body.message.cmd, body.message.flag, body.message.body);
    if (!qe || qe.family !== family || qe.appid !== target.appid || qe.owner !== target.id) {
      const whose = qe
        ? `an entry of ${qe.family === 'peer' ? '' : 'group '}${qe.appid}:${qe.owner}`
        : `a ${entry.cmdName}`;
      error = `entry ${next} is ${whose}, not an entry of ${name}`;
      break;
    }
    const prev = peerOnly ? qe.prevPeerMsgid : qe.prevMsgid;
    const seq = qe.seq > 0 ? qe.seq : counted;
    counted = seq === null ? null : seq - 1;
    const msg = decodeAt(reader, qe.msgid);
    items.push({
      entry,
      message: 'error' in msg ? null : msg.record,
      ...(seq !== null && seq > 0 ? { seq } : {}),
      ...('error' in msg ? { error: msg.error } : {}),
    });
    if (!(prev < next) && prev !== 0) {
      error = `entry ${next} points forward to ${prev}`;
      break;
    }
    next = prev;
  }
  const more = error === null && endsAtFiller === null && next !== 0;
  const names = INDEX_VALUE_NAMES[folder.layout.format][family];
  const heads = e < 0 ? null : Object.fromEntries(names.map((n, i) => [n, table.getValue(e, i)]));
  if (options.json) {
    options.print(
      JSON.stringify(
        {
          [isUser ? 'user' : 'group']: `${target.appid}:${target.id}`,
          queueFormat: folder.queueFormat,
          chain: peerOnly ? 'prev_peer_msgid' : 'prev_msgid',
          heads,
          headsFrom: source,
          entries: items,
          more,
          ...(endsAtFiller !== null ? { endsAtFiller } : {}),
          ...(error ? { error } : {}),
        },
        null,
        2,
      ),
    );
  } else {
    if (heads === null) {
      options.print(`${name}: no queue (no entry in the index; heads ${source})`);
    } else {
      const text = Object.entries(heads)
        .map(([k, v]) => `${goValueName(k)}=${v}`)
        .join(' ');
      options.print(
        `${name}: ${text} (heads ${source}); newest first, following ${peerOnly ? 'prev_peer_msgid' : 'prev_msgid'}:`,
      );
    }
    for (const item of items) {
      if (item.entry) options.print(formatRecord(item.entry));
      // A v4 entry shows its seq among its fields; a v2 one below the switch point only has the count.
      if (item.seq !== undefined && item.entry?.fields.seq === undefined)
        options.print(`  seq ${item.seq} (counted: a v2 entry carries none)`);
      if (item.message) options.print(formatRecord(item.message, '    '));
      if (item.error) options.print(`    message: ${item.error}`);
    }
    if (more) options.print(`… more entries before ${next} (raise --limit to see them)`);
    if (endsAtFiller !== null)
      options.print(
        `the chain ends at ${endsAtFiller}: a filler 'ims repair --damaged fill' wrote over a damaged entry`,
      );
    if (error) options.print(`chain broken: ${error}`);
  }
  return e < 0 || error ? 1 : 0;
}
