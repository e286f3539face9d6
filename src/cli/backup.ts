/**
 * `ims backup --from HOST:SYNC_PORT DIR`: an online backup taken the way a slave follows. It connects
 * to a running ims server's sync port asking for the ims extensions and for the durable end: the hello
 * says the master's durable end and epoch history at that moment; it writes every record before that
 * end at exactly its master id (the engine's slave path: checksums kept, a gap never padded), fsyncs,
 * saves the index files and exits. DIR is then a data folder on its own. Consistency comes from the log
 * itself: the copy is a prefix of the master's log ending at a record boundary the master had made
 * durable, and the index is replayed from that prefix. DIR keeps the master's epoch history (up to the
 * copied end). Run again on the same DIR, it compares that history with the master's and continues from
 * DIR's log end only when DIR is a prefix of the master's log; otherwise (a failover cut DIR's tail, or
 * another master) it refuses, naming both. A torn tail left by a kill is cut at open, as on any start.
 * It never acknowledges, so it never counts as an in-sync replica. (A master that does not know the
 * durable-end flag, Go or an older ims, answers with its log end.)
 */
import * as net from 'node:net';
import { Cmd, cmdName } from '../format/constants.js';
import {
  decodeBatchBody,
  decodeHelloBody,
  decodeRetainedFromBody,
  decodeSyncMessageBody,
  encodeExtendedSyncBegin,
  type SyncFrame,
} from '../format/sync-frames.js';
import type { RawMessage } from '../format/record.js';
import { batchRecordIds, continuationProblem } from '../replication/sync-slave.js';
import { FrameReader } from '../replication/frame-reader.js';
import { MessageStore } from '../storage/message-store.js';
import { divergence, mergeFollowerHistory, type EpochEntry } from '../storage/epochs.js';
import type { ProgressBar } from './progress.js';

export interface BackupOptions {
  host: string;
  port: number;
  blockSize: number;
  progress: ProgressBar;
  print: (line: string) => void;
}

export interface BackupResult {
  from: number;
  to: number;
  records: number;
}

class BackupError extends Error {}

/** An epoch history as `1@32, 2@5120` (epoch@first id), or `none`. */
function epochList(history: readonly EpochEntry[]): string {
  return history.length > 0 ? history.map((e) => `${e.epoch}@${e.startId}`).join(', ') : 'none';
}

function latestOf(history: readonly EpochEntry[]): number {
  return history.length > 0 ? history[history.length - 1].epoch : 0;
}

type Outcome = { kind: 'done'; records: number } | { kind: 'restart' };

export async function runBackup(dir: string, options: BackupOptions): Promise<BackupResult> {
  const store = MessageStore.open({ root: dir, blockSize: options.blockSize, lockRole: 'ims backup' });
  try {
    const from = store.nextId;
    let records = 0;
    for (let attempt = 0; attempt < 3; attempt++) {
      const outcome = await session(store, options);
      if (outcome.kind === 'done') {
        records += outcome.records;
        await store.flush();
        await store.saveIndex();
        return { from, to: store.nextId, records };
      }
    }
    throw new BackupError('the master kept telling us to restart the log; giving up');
  } finally {
    await store.close({ saveIndex: false });
  }
}

function session(store: MessageStore, options: BackupOptions): Promise<Outcome> {
  return new Promise<Outcome>((resolve, reject) => {
    const socket = net.connect({ host: options.host, port: options.port });
    const reader = new FrameReader();
    let target = -1;
    let start = store.nextId;
    let records = 0;
    let settled = false;
    // Frames are applied one at a time, in order: each chunk's work waits for the previous one's.
    let pumping: Promise<void> = Promise.resolve();
    const finish = (err: Error | null, outcome?: Outcome) => {
      if (settled) return;
      settled = true;
      options.progress.clear();
      socket.destroy();
      if (err) reject(err);
      else resolve(outcome!);
    };
    const apply = async (frame: SyncFrame): Promise<Outcome | null> => {
      if (frame.cmd === Cmd.STORAGE_SYNC_HELLO) {
        const d = decodeHelloBody(frame.body);
        if (!d.ok) throw new BackupError(d.problem);
        target = d.value.logEnd;
        start = store.nextId;
        const ours = store.epochs.entries;
        const theirs = d.value.history;
        const where = divergence(ours, start, theirs, target);
        if (start > target || where.relation === 'diverged' || where.relation === 'ahead') {
          // Copying on would splice the master's records onto a log it does not share (a failover cut
          // this tail, or another cluster's master): the folder would hold records no server ever had.
          throw new BackupError(
            `refusing to splice onto a different log: this backup ends at ${start} (epochs ${epochList(ours)}), ` +
              `the master's log is at epoch ${d.value.epoch}, durable end ${target} (epochs ${epochList(theirs)}); ` +
              `they agree only up to ${where.agreedEnd} (common epoch ${where.commonEpoch}). ` +
              `Back up into a new, empty folder`,
          );
        }
        // The master's history up to what this copy will hold, before any record of it (as a slave
        // does): a resumed backup is then compared by epochs, not by its length alone.
        const adopted = mergeFollowerHistory(ours, theirs, where.agreedEnd).filter(
          (e) => e.startId <= target,
        );
        store.epochs.replace(adopted);
        options.print(
          start > store.firstId
            ? `continuing from ${start} (epoch ${latestOf(ours)}) up to the master's durable end ${target} (epoch ${d.value.epoch})`
            : `copying the master's log up to its durable end ${target} (epoch ${d.value.epoch})`,
        );
        return target <= store.nextId ? { kind: 'done', records } : null;
      }
      if (frame.cmd === Cmd.STORAGE_SYNC_RETAINED_FROM) {
        const d = decodeRetainedFromBody(frame.body);
        if (!d.ok) throw new BackupError(d.problem);
        const r = await store.restartAt(d.value.firstId);
        options.print(
          `the master's log now starts at ${d.value.firstId}, past this copy's end: deleted ${r.deletedBlocks} ` +
            `old block(s) and restarting there`,
        );
        return { kind: 'restart' };
      }
      if (frame.cmd === Cmd.STORAGE_SYNC_HEARTBEAT) return null;
      if (target < 0) {
        throw new BackupError(
          `the server answered ${cmdName(frame.cmd)} without a hello: it is not an ims server (a Go master ` +
            `does not say where its log ends); back it up with a slave instead`,
        );
      }
      let ids: number[];
      let messages: RawMessage[];
      if (frame.cmd === Cmd.STORAGE_SYNC_MESSAGE_BATCH) {
        const d = decodeBatchBody(frame.body);
        if (!d.ok) throw new BackupError(d.problem);
        messages = d.value.messages;
        ids = batchRecordIds(d.value.firstId, messages, store.files.blockSize);
      } else if (frame.cmd === Cmd.STORAGE_SYNC_MESSAGE) {
        const d = decodeSyncMessageBody(frame.body);
        if (!d.ok) throw new BackupError(d.problem);
        ids = [d.value.msgId];
        messages = [d.value.message];
      } else {
        throw new BackupError(`unexpected ${cmdName(frame.cmd)} from the server`);
      }
      // Only what was in the log when we connected: later records are not part of this backup.
      const keep = ids.findIndex((id) => id >= target);
      if (keep >= 0) {
        ids = ids.slice(0, keep);
        messages = messages.slice(0, keep);
      }
      const problem = continuationProblem(store.nextId, ids, messages, store.files.blockSize);
      if (problem) throw new BackupError(problem);
      for (let i = 0; i < ids.length; i++) {
        if (store.applyReplicated(ids[i], messages[i]) === 'written') records++;
      }
      await store.whenDurable();
      options.progress.update(store.nextId - start, target - start, `up to ${target}`);
      return store.nextId >= target || keep >= 0 ? { kind: 'done', records } : null;
    };
    const pump = async () => {
      try {
        for (let frame = settled ? null : reader.next(); frame; frame = settled ? null : reader.next()) {
          const outcome = await apply(frame);
          if (outcome) return finish(null, outcome);
        }
      } catch (err) {
        finish(err as Error);
      }
    };
    // Asks for the durable end: a record the master has not fsynced may still be lost (and its id reused).
    socket.on('connect', () => socket.write(encodeExtendedSyncBegin(store.nextId, 1, true)));
    socket.on('data', (chunk: Buffer) => {
      reader.push(chunk);
      pumping = pumping.then(pump);
    });
    socket.on('error', (err) => finish(new BackupError(`${options.host}:${options.port}: ${err.message}`)));
    socket.on('close', () => {
      void pumping.then(() =>
        finish(new BackupError(`the server closed the link at ${store.nextId} before its log end ${target}`)),
      );
    });
  });
}
