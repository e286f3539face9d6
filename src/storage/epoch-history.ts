/**
 * A data folder's epoch history (`epoch_history`, see format/epoch-file.ts), kept in memory and written
 * durably and atomically on every change: temp file, fsync, rename, fsync of the folder. Synchronous,
 * like the engine's write path; the file is a few hundred bytes.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  EPOCH_FILE,
  decodeEpochHistory,
  encodeEpochHistory,
  epochHistoryProblem,
  type EpochEntry,
} from '../format/epoch-file.js';
import { fsyncDirectory } from './block-files.js';
import { StorageInputError, StorageOpenError, StorageWriteError } from './storage-errors.js';

export type { EpochEntry };

export class EpochHistory {
  private list: readonly EpochEntry[];

  private constructor(
    readonly root: string,
    entries: readonly EpochEntry[],
  ) {
    this.list = freeze(entries);
  }

  /** Loads `root/epoch_history`; a missing file is an empty history, a damaged one a StorageOpenError. */
  static load(root: string): EpochHistory {
    const file = path.join(root, EPOCH_FILE);
    let data: Buffer;
    try {
      data = fs.readFileSync(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new EpochHistory(root, []);
      throw new StorageOpenError(`${file}: cannot be read: ${(err as Error).message}`);
    }
    const decoded = decodeEpochHistory(data);
    if (!decoded.ok) {
      throw new StorageOpenError(
        `${file}: ${decoded.problem}; the epoch history cannot be trusted and an operator has to look at ` +
          `it (without the file the whole log counts as epoch 0)`,
      );
    }
    return new EpochHistory(root, decoded.value);
  }

  get file(): string {
    return path.join(this.root, EPOCH_FILE);
  }

  /** The entries, oldest first (frozen). */
  get entries(): readonly EpochEntry[] {
    return this.list;
  }

  /** The newest epoch, 0 when the history is empty. */
  get latestEpoch(): number {
    return this.list.length > 0 ? this.list[this.list.length - 1].epoch : 0;
  }

  /**
   * Appends epoch `epoch` starting at `startId` (normally the log end when a master starts) and makes it
   * durable before returning. The epoch must be larger than every epoch so far, and `startId` not smaller
   * than the previous start (a promoted follower trims epochs past its log end first: `trimHistory`).
   */
  begin(epoch: number, startId: number): void {
    const last = this.list.at(-1);
    if (!Number.isSafeInteger(epoch) || epoch <= this.latestEpoch) {
      throw new StorageInputError(
        `epoch ${epoch} must be an integer larger than the latest epoch ${this.latestEpoch}`,
      );
    }
    if (!Number.isSafeInteger(startId) || startId < (last?.startId ?? 0)) {
      throw new StorageInputError(
        `epoch ${epoch} cannot start at ${startId}: ${last ? `epoch ${last.epoch} starts at ${last.startId}` : 'ids are ≥ 0'}`,
      );
    }
    this.write([...this.list, { epoch, startId }]);
  }

  /** Replaces the whole history (a follower adopting its master's, after cutting its log) durably. */
  replace(entries: readonly EpochEntry[]): void {
    const problem = epochHistoryProblem(entries);
    if (problem) throw new StorageInputError(`invalid epoch history: ${problem}`);
    this.write(entries.map((e) => ({ epoch: e.epoch, startId: e.startId })));
  }

  /** Temp file, fsync, rename over the old file, fsync the folder; memory changes only once it is done. */
  private write(entries: EpochEntry[]): void {
    const file = this.file;
    const tmp = `${file}_t`;
    try {
      const data = encodeEpochHistory(entries);
      const fd = fs.openSync(tmp, 'w', 0o644);
      try {
        let done = 0;
        while (done < data.length) done += fs.writeSync(fd, data, done, data.length - done, done);
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      fs.renameSync(tmp, file);
      fsyncDirectory(this.root);
    } catch (err) {
      throw new StorageWriteError(`cannot write ${file}: ${(err as Error).message}`, { cause: err });
    }
    this.list = freeze(entries);
  }
}

function freeze(entries: readonly EpochEntry[]): readonly EpochEntry[] {
  return Object.freeze(entries.map((e) => Object.freeze({ epoch: e.epoch, startId: e.startId })));
}
