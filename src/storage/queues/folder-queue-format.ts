/**
 * Which queue format a data folder holds, and the `queue_format` file that records it.
 *
 * The folder decides, in this order: the `queue_format` file (written by ims for every v4 folder and by
 * `ims upgrade`; Go ignores it), then the first queue record in the log, then which index files exist.
 * A folder with none of these is empty. The setting (`queue_format` config key) may only agree with
 * what the folder holds; an empty folder takes the setting, or v2 (so a Go 2.0 slave keeps working).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BLOCK_HEADER_SIZE, cmdName } from '../../format/constants.js';
import { INDEX_FILE_SPECS, QUEUE_FORMATS, type QueueFormatName } from '../../format/index-file.js';
import { UNREADABLE_QUEUE_CMDS, V2_QUEUE_CMDS, V4_QUEUE_CMDS } from '../../format/queue-entries.js';
import { fsyncDirectory, type BlockFiles } from '../block-files.js';
import { StorageOpenError } from '../storage-errors.js';

export const QUEUE_FORMAT_FILE = 'queue_format';

/** Contents of the `queue_format` file. */
export interface QueueFormatRecord {
  format: QueueFormatName;
  /** First log id written in this format (0: always was); below it lie records of `from`. */
  since: number;
  from?: QueueFormatName;
  switchedAt?: string;
}

export function readQueueFormatFile(root: string): QueueFormatRecord | null {
  const file = path.join(root, QUEUE_FORMAT_FILE);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new StorageOpenError(`${file}: ${(err as Error).message}`);
  }
  let r: QueueFormatRecord;
  try {
    r = JSON.parse(text) as QueueFormatRecord;
  } catch {
    throw new StorageOpenError(`${file} is not JSON: an ims queue_format file holds {"format":"v4",…}`);
  }
  if (!QUEUE_FORMATS.includes(r.format) || !Number.isSafeInteger(r.since) || r.since < 0) {
    throw new StorageOpenError(`${file}: format must be v2 or v4 and since a log id, got ${text.trim()}`);
  }
  return r;
}

/** Writes the `queue_format` file atomically (temp, fsync, rename, folder fsync). */
export function writeQueueFormatFile(root: string, record: QueueFormatRecord): void {
  const file = path.join(root, QUEUE_FORMAT_FILE);
  fs.writeFileSync(`${file}_t`, JSON.stringify(record) + '\n', { flush: true });
  fs.renameSync(`${file}_t`, file);
  fsyncDirectory(root);
}

/** The `queue_format` setting contradicts what the folder holds. */
export class QueueFormatMismatchError extends StorageOpenError {
  constructor(
    readonly setting: QueueFormatName,
    readonly reason: string,
  ) {
    super(`queue_format is ${setting} but ${reason}`);
    this.name = 'QueueFormatMismatchError';
  }
}

export interface FolderQueueFormat {
  /** null: the folder holds no queue yet. */
  format: QueueFormatName | null;
  /** What showed it, for messages ("MSG_OFFLINE_V4 records", "peer_index.v3"). */
  evidence: string;
  record: QueueFormatRecord | null;
}

class FoundQueueRecord extends Error {
  constructor(readonly cmd: number) {
    super('found');
  }
}

/** The kind of the first queue record in the log, or null when there is none. */
function firstQueueCmd(files: BlockFiles): number | null {
  for (let b = files.firstBlock; b <= files.writeBlock; b++) {
    try {
      files.scan(b, BLOCK_HEADER_SIZE, (_id, msg) => {
        if (decidesQueueFormat(msg.cmd)) throw new FoundQueueRecord(msg.cmd);
      });
    } catch (err) {
      if (err instanceof FoundQueueRecord) return err.cmd;
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw err;
    }
  }
  return null;
}

/** What the folder holds (blocks must be open). Refuses queue records ims cannot read. */
export function folderQueueFormat(root: string, files: BlockFiles): FolderQueueFormat {
  return queueFormatOf(root, () => firstQueueCmd(files));
}

/** True for the record kinds that decide a folder's format (the tools look for the first of them). */
export function decidesQueueFormat(cmd: number): boolean {
  return V2_QUEUE_CMDS.has(cmd) || V4_QUEUE_CMDS.has(cmd) || UNREADABLE_QUEUE_CMDS.has(cmd);
}

/**
 * What the folder holds, given a way to find the kind of the log's first queue record (the engine
 * scans its blocks; the tools their own reader).
 */
export function queueFormatOf(root: string, firstQueueCmd: () => number | null): FolderQueueFormat {
  const record = readQueueFormatFile(root);
  if (record) return { format: record.format, evidence: `its ${QUEUE_FORMAT_FILE} file`, record };
  const cmd = firstQueueCmd();
  if (cmd !== null && UNREADABLE_QUEUE_CMDS.has(cmd)) {
    throw new StorageOpenError(
      `${root} holds ${cmdName(cmd)} queue records (a GoBelieve store version between 2.0 and the newest), ` +
        `which ims cannot read; it will not serve the folder as if its queues were empty`,
    );
  }
  if (cmd !== null) {
    const format = V4_QUEUE_CMDS.has(cmd) ? 'v4' : 'v2';
    return { format, evidence: `${cmdName(cmd)} queue records`, record: null };
  }
  for (const format of ['v4', 'v2'] as const) {
    const name = INDEX_FILE_SPECS[format].peer.name;
    if (fs.existsSync(path.join(root, name))) return { format, evidence: name, record: null };
  }
  return { format: null, evidence: 'no queue records', record: null };
}

/**
 * The format to serve the folder in: what it holds, which the setting must not contradict. An empty
 * folder takes the setting (v2 when unset).
 */
export function resolveQueueFormat(
  root: string,
  held: FolderQueueFormat,
  setting: QueueFormatName | undefined,
): QueueFormatName {
  if (held.format === null) return setting ?? 'v2';
  if (setting && setting !== held.format) {
    const hint =
      held.format === 'v2'
        ? `; run 'ims upgrade --queue-format v4 ${root}' to switch it to v4, keeping its history`
        : '; a v4 folder cannot be served as v2 (remove the setting to serve it as v4)';
    throw new QueueFormatMismatchError(
      setting,
      `${root} holds ${held.format} queues (${held.evidence})${hint}`,
    );
  }
  return held.format;
}
