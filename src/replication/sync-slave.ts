/**
 * The slave side of replication: follows master_address. It sends its cursor (the id its next record
 * gets), writes every record at exactly its master id, and makes each batch durable before reading the
 * next (Go bug 20). A gap is never padded (Go bugs 18/19): it closes the link, and the slave reconnects
 * from its own cursor. A frame is parsed and checked whole before any of it is written, so a bad frame
 * leaves the files as they were.
 */
import * as net from 'node:net';
import { BLOCK_HEADER_SIZE, Cmd, cmdName } from '../format/constants.js';
import { recordSize, type RawMessage } from '../format/record.js';
import {
  LIVE_BATCH_MESSAGES,
  MAX_BATCH_BYTES,
  decodeBatchBody,
  decodeSyncMessageBody,
  encodeSyncBegin,
  type SyncFrame,
} from '../format/sync-frames.js';
import type { StorageService } from '../storage/storage.service.js';
import type { StorageLogger } from '../storage/storage-logger.js';
import { FrameReader, SyncProtocolError } from './frame-reader.js';

export const MIN_BACKOFF_MS = 100;
export const MAX_BACKOFF_MS = 60_000;
const CONNECT_TIMEOUT_MS = 10_000;

export interface SlaveLinkStatus {
  masterAddress: string;
  connected: boolean;
  connectedAt: string | null;
  /** The id our next record gets (what we send as the cursor). */
  cursor: number;
  /** Id of the last record written from the master (0 before any). */
  lastAppliedId: number;
  /** Milliseconds since we were last level with the master while the master still has more (0: level). */
  lagMs: number;
  caughtUp: boolean;
  recordsApplied: number;
  lastBatchAt: string | null;
  reconnects: number;
  nextRetryMs: number | null;
  lastError: string | null;
}

/** Ids of a batch's records: consecutive from first_id, rolling to the next block as the master did. */
export function batchRecordIds(
  firstId: number,
  messages: readonly RawMessage[],
  blockSize: number,
): number[] {
  const ids: number[] = [];
  let id = firstId;
  for (let i = 0; i < messages.length; i++) {
    const size = recordSize(messages[i].body.length);
    // The master starts a new block when a record does not fit (Go live batches may span blocks).
    if (i > 0 && (id % blockSize) + size > blockSize)
      id = (Math.floor(id / blockSize) + 1) * blockSize + BLOCK_HEADER_SIZE;
    ids.push(id);
    id += size;
  }
  return ids;
}

/**
 * Checks that records at `ids` continue a log ending at `logEnd` with no gap: each is either already
 * present (skipped) or lands exactly where our next record would. Returns the problem or null.
 */
export function continuationProblem(
  logEnd: number,
  ids: readonly number[],
  messages: readonly RawMessage[],
  blockSize: number,
): string | null {
  let end = logEnd;
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    const size = recordSize(messages[i].body.length);
    if (id % blockSize < BLOCK_HEADER_SIZE || (id % blockSize) + size > blockSize) {
      return `record ${id} (${size} bytes) does not fit in a ${blockSize}-byte block`;
    }
    if (id + size <= end) continue;
    if (id < end) return `record ${id} overlaps our log end ${end}`;
    const offset = end % blockSize;
    const expected =
      offset + size > blockSize || offset < BLOCK_HEADER_SIZE
        ? (Math.floor(end / blockSize) + (offset < BLOCK_HEADER_SIZE ? 0 : 1)) * blockSize + BLOCK_HEADER_SIZE
        : end;
    if (id !== expected) {
      return `gap: the master sent record ${id} but our log ends at ${end} (next record expected at ${expected}); not padding it`;
    }
    end = id + size;
  }
  return null;
}

export class SyncSlave {
  private stopped = false;
  private loop: Promise<void> | null = null;
  private socket: net.Socket | null = null;
  private sleepTimer: NodeJS.Timeout | null = null;
  private wakeSleep: (() => void) | null = null;
  private connected = false;
  private connectedAt: Date | null = null;
  private lastAppliedId = 0;
  private recordsApplied = 0;
  private lastBatchAt: Date | null = null;
  private levelAt = Date.now();
  private caughtUp = false;
  private reconnects = 0;
  private nextRetryMs: number | null = null;
  private lastError: string | null = null;
  private readonly host: string;
  private readonly port: number;

  constructor(
    private readonly storage: StorageService,
    readonly masterAddress: string,
    private readonly logger: StorageLogger,
  ) {
    const i = masterAddress.lastIndexOf(':');
    this.host = masterAddress.slice(0, i).replace(/^\[|\]$/g, '') || '127.0.0.1';
    this.port = Number(masterAddress.slice(i + 1));
  }

  start(): void {
    this.loop ??= this.run();
  }

  private async run(): Promise<void> {
    let backoff = MIN_BACKOFF_MS;
    while (!this.stopped) {
      const progressed = await this.session();
      if (this.stopped) break;
      if (progressed) backoff = MIN_BACKOFF_MS;
      this.reconnects++;
      this.nextRetryMs = backoff;
      this.logger.log(
        `reconnecting to master ${this.masterAddress} in ${backoff} ms (cursor ${this.storage.store.nextId})`,
      );
      await new Promise<void>((resolve) => {
        this.wakeSleep = resolve;
        this.sleepTimer = setTimeout(resolve, backoff);
      });
      this.wakeSleep = null;
      this.nextRetryMs = null;
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
    }
  }

  /** One connection. Resolves when it closes, with whether any frame was applied. */
  private session(): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      let progressed = false;
      let pumping: Promise<void> | null = null;
      let busy = false;
      let failed = false;
      const reader = new FrameReader();
      const socket = net.connect({ host: this.host, port: this.port });
      this.socket = socket;
      socket.setTimeout(CONNECT_TIMEOUT_MS);
      const fail = (problem: string, level: 'log' | 'warn' | 'error') => {
        if (failed) return;
        failed = true;
        this.lastError = problem;
        this.logger[level](`link to master ${this.masterAddress}: ${problem}`);
        socket.destroy();
      };
      socket.on('timeout', () => fail(`connect timed out after ${CONNECT_TIMEOUT_MS} ms`, 'warn'));
      socket.on('connect', () => {
        socket.setTimeout(0);
        socket.setKeepAlive(true, 60_000);
        this.connected = true;
        this.connectedAt = new Date();
        this.caughtUp = false;
        this.levelAt = Date.now();
        const cursor = this.storage.store.nextId;
        socket.write(encodeSyncBegin(cursor, 1));
        this.logger.log(`connected to master ${this.masterAddress}, cursor ${cursor}`);
      });
      const pump = async () => {
        busy = true;
        socket.pause();
        try {
          for (;;) {
            if (failed || this.stopped) return;
            const frame = reader.next();
            if (!frame) break;
            await this.applyFrame(frame);
            progressed = true;
          }
        } catch (err) {
          const e = err as Error;
          fail(
            e instanceof SyncProtocolError ? `bad frame: ${e.message}` : `${e.name}: ${e.message}`,
            'error',
          );
        } finally {
          busy = false;
          if (!failed && !socket.destroyed) socket.resume();
        }
      };
      socket.on('data', (chunk: Buffer) => {
        reader.push(chunk);
        if (!busy) pumping = pump();
      });
      socket.on('error', (err) => fail(`${err.message}`, 'log'));
      socket.on('close', () => {
        const wasConnected = this.connected;
        this.connected = false;
        this.socket = null;
        if (wasConnected && !failed && !this.stopped) {
          this.lastError = 'the master closed the link';
          this.logger.warn(`link to master ${this.masterAddress} closed by the master`);
        }
        void Promise.resolve(pumping).then(() => resolve(progressed));
      });
    });
  }

  private async applyFrame(frame: SyncFrame): Promise<void> {
    if (frame.cmd === Cmd.STORAGE_SYNC_MESSAGE_BATCH) {
      const d = decodeBatchBody(frame.body);
      if (!d.ok) throw new SyncProtocolError(`batch frame seq ${frame.seq}: ${d.problem}`);
      const { firstId, lastId, messages } = d.value;
      if (messages.length === 0) return;
      const ids = batchRecordIds(firstId, messages, this.storage.store.files.blockSize);
      if (ids[ids.length - 1] !== lastId) {
        throw new SyncProtocolError(
          `batch frame seq ${frame.seq}: last_id ${lastId} does not match where its ${messages.length} messages from ${firstId} end (${ids[ids.length - 1]})`,
        );
      }
      await this.applyRecords(ids, messages, frame.seq);
      const bytes = frame.body.length;
      const wasLevel = this.caughtUp;
      // A batch the master cut at its size limits means it has more right now.
      this.caughtUp = messages.length < LIVE_BATCH_MESSAGES && bytes < MAX_BATCH_BYTES / 2;
      if (this.caughtUp) {
        this.levelAt = Date.now();
        if (!wasLevel) {
          this.logger.log(
            `caught up with master ${this.masterAddress} at ${this.storage.store.nextId} (last applied ${this.lastAppliedId})`,
          );
        }
      }
    } else if (frame.cmd === Cmd.STORAGE_SYNC_MESSAGE) {
      const d = decodeSyncMessageBody(frame.body);
      if (!d.ok) throw new SyncProtocolError(`frame seq ${frame.seq}: ${d.problem}`);
      await this.applyRecords([d.value.msgId], [d.value.message], frame.seq);
      this.caughtUp = true;
      this.levelAt = Date.now();
    } else {
      throw new SyncProtocolError(`frame seq ${frame.seq}: unexpected ${cmdName(frame.cmd)} from the master`);
    }
  }

  private async applyRecords(ids: number[], messages: RawMessage[], seq: number): Promise<void> {
    const store = this.storage.store;
    const problem = continuationProblem(store.nextId, ids, messages, store.files.blockSize);
    if (problem) throw new SyncProtocolError(`frame seq ${seq}: ${problem}`);
    let written = 0;
    for (let i = 0; i < ids.length; i++) {
      if (this.storage.applyReplicated(ids[i], messages[i]) === 'written') {
        written++;
        this.lastAppliedId = ids[i];
      }
    }
    // On disk before we read more: a restarted slave resumes from what is durable.
    await store.whenDurable();
    this.recordsApplied += written;
    this.lastBatchAt = new Date();
  }

  status(): SlaveLinkStatus {
    return {
      masterAddress: this.masterAddress,
      connected: this.connected,
      connectedAt: this.connectedAt?.toISOString() ?? null,
      cursor: this.storage.isOpen ? this.storage.store.nextId : 0,
      lastAppliedId: this.lastAppliedId,
      lagMs:
        this.connected && !this.caughtUp
          ? Date.now() - this.levelAt
          : this.connected
            ? 0
            : Date.now() - this.levelAt,
      caughtUp: this.connected && this.caughtUp,
      recordsApplied: this.recordsApplied,
      lastBatchAt: this.lastBatchAt?.toISOString() ?? null,
      reconnects: this.reconnects,
      nextRetryMs: this.nextRetryMs,
      lastError: this.lastError,
    };
  }

  /** Stops reconnecting, closes the link and waits for a batch being written to finish. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.sleepTimer) clearTimeout(this.sleepTimer);
    this.wakeSleep?.();
    this.socket?.destroy();
    await this.loop;
  }
}
