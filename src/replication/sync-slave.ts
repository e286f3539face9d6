/**
 * The slave side of replication: follows master_address. It sends its cursor (the id its next record
 * gets), writes every record at exactly its master id, and makes each batch durable before reading the
 * next (Go bug 20). A gap is never padded (Go bugs 18/19): it closes the link, and the slave reconnects
 * from its own cursor. A frame is parsed and checked whole before any of it is written, so a bad frame
 * leaves the files as they were.
 */
import * as net from 'node:net';
import * as tls from 'node:tls';
import { BLOCK_HEADER_SIZE, Cmd, cmdName } from '../format/constants.js';
import { recordSize, type RawMessage } from '../format/record.js';
import {
  LIVE_BATCH_MESSAGES,
  MAX_BATCH_BYTES,
  decodeBatchBody,
  decodeHeartbeatBody,
  decodeHelloBody,
  decodeRetainedFromBody,
  decodeSyncMessageBody,
  encodeAckFrame,
  encodeExtendedSyncBegin,
  encodeIdentFrame,
  type SyncFrame,
  type SyncHello,
} from '../format/sync-frames.js';
import { IMPLICIT_EPOCH } from '../storage/epochs.js';
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
  /** The master speaks the ims extensions (acknowledgements, heartbeats, epochs); a Go master does not. */
  acknowledging: boolean;
  /** The master's epoch, from its hello and heartbeats (null for a Go master). */
  masterEpoch: number | null;
  /** The master's log end as it last told us (null for a Go master). */
  masterLogEnd: number | null;
  /** Bytes of the master's log we do not hold (exact with an ims master; null for a Go master). */
  lagBytes: number | null;
  /** Milliseconds since we last held everything the master had (0: level). */
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
  /** How many times in a row the link failed with the same problem (said once, then counted). */
  private repeats = 0;
  private streakProblem: string | null = null;
  private nextRetryMs: number | null = null;
  private lastError: string | null = null;
  /** The current link's master speaks the extensions (it said hello). */
  private extended = false;
  private masterEpoch: number | null = null;
  private masterLogEnd: number | null = null;
  /**
   * The acknowledged end the master last reported (null: it never did: a Go master, or an ims master
   * of a version that does not). Kept across links: a master elected next holds everything below it.
   */
  private masterAcknowledgedEnd: number | null = null;
  private socketSeq = 0;
  private lastAckedEnd = -1;
  private readonly host: string;
  private readonly port: number;

  constructor(
    private readonly storage: StorageService,
    readonly masterAddress: string,
    private readonly logger: StorageLogger,
    /** How this node names itself to an ims master (its in-sync set holds names). */
    private readonly nodeName: string,
    /** Connect over TLS, presenting this server's certificate (a Go master cannot speak TLS). */
    private readonly tlsOptions?: tls.ConnectionOptions,
    /** A master's unfinished frame that receives nothing this long ends the link (incomplete_frame_timeout_ms). */
    private readonly incompleteFrameMs?: number,
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
      if (progressed) {
        backoff = MIN_BACKOFF_MS;
        this.repeats = 0;
        this.streakProblem = null;
      }
      this.reconnects++;
      this.nextRetryMs = backoff;
      const again = this.repeats > 0 ? `; the same failure ${this.repeats + 1} times: ${this.lastError}` : '';
      this.logger.log(
        `reconnecting to master ${this.masterAddress} in ${backoff} ms (cursor ${this.storage.logEnd}${again})`,
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
      const socket = this.tlsOptions
        ? tls.connect({ ...this.tlsOptions, host: this.host, port: this.port })
        : net.connect({ host: this.host, port: this.port });
      this.socket = socket;
      socket.setTimeout(CONNECT_TIMEOUT_MS);
      const fail = (problem: string, level: 'log' | 'warn' | 'error') => {
        if (failed) return;
        failed = true;
        // The same failure on every reconnect is said once; the reconnect lines show the back-off.
        if (problem !== this.streakProblem)
          this.logger[level](`link to master ${this.masterAddress}: ${problem}`);
        else this.repeats++;
        this.streakProblem = problem;
        this.lastError = problem;
        socket.destroy();
      };
      socket.on('timeout', () => fail(`connect timed out after ${CONNECT_TIMEOUT_MS} ms`, 'warn'));
      // A frame the master started and stopped sending: the link is dead or the master hostile.
      let stallTimer: NodeJS.Timeout | undefined;
      const watchStall = () => {
        clearTimeout(stallTimer);
        const ms = this.incompleteFrameMs;
        if (!ms || busy || failed || reader.bufferedBytes === 0) return;
        const held = reader.bufferedBytes;
        stallTimer = setTimeout(
          () =>
            fail(
              `its unfinished frame (${held} bytes held) received nothing for ${ms} ms (incomplete_frame_timeout_ms)`,
              'warn',
            ),
          ms,
        );
        stallTimer.unref();
      };
      // Over TLS the link is up once the handshake (both certificates checked) is done.
      socket.on(this.tlsOptions ? 'secureConnect' : 'connect', () => {
        socket.setTimeout(0);
        // Acknowledgements go out at once: Nagle would hold one back while the previous is unacknowledged.
        socket.setNoDelay(true);
        socket.setKeepAlive(true, 60_000);
        this.connected = true;
        this.connectedAt = new Date();
        this.caughtUp = false;
        this.extended = false;
        this.masterLogEnd = null;
        this.socketSeq = 1;
        const cursor = this.storage.logEnd;
        // Asks for the ims extensions in the flag byte; a Go master ignores it and streams as usual.
        socket.write(encodeExtendedSyncBegin(cursor, 1));
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
            const applied = this.recordsApplied;
            const outcome = await this.applyFrame(frame, socket);
            if (outcome === 'reconnect') {
              // Our log was cut back to where it agrees with the master: follow again from there at once.
              progressed = true;
              failed = true;
              socket.destroy();
              return;
            }
            // Progress is records written, not frames read: a link that says hello and then fails on
            // every write (a full disk) must back off further each time, not retry every 100 ms.
            if (this.recordsApplied > applied) progressed = true;
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
          watchStall();
        }
      };
      socket.on('data', (chunk: Buffer) => {
        reader.push(chunk);
        if (!busy) pumping = pump();
        watchStall();
      });
      socket.on('error', (err) => fail(`${err.message}`, 'log'));
      socket.on('close', () => {
        clearTimeout(stallTimer);
        const wasConnected = this.connected;
        this.connected = false;
        this.socket = null;
        if (wasConnected && !failed && !this.stopped) {
          // A master that refuses followers (it no longer leads) closes every reconnect: said once.
          const problem = 'closed by the master';
          if (progressed || problem !== this.streakProblem)
            this.logger.warn(`link to master ${this.masterAddress} closed by the master`);
          else this.repeats++;
          this.streakProblem = problem;
          this.lastError = 'the master closed the link';
        }
        void Promise.resolve(pumping).then(() => resolve(progressed));
      });
    });
  }

  /** Acknowledges what is on our disk to an ims master. */
  private ack(socket: net.Socket, force = false): void {
    if (!this.extended || socket.destroyed) return;
    const durableEnd = this.storage.durableEnd;
    // A heartbeat after a batch would otherwise repeat the batch's acknowledgement: one per position.
    if (!force && durableEnd === this.lastAckedEnd) return;
    this.lastAckedEnd = durableEnd;
    this.socketSeq = (this.socketSeq + 1) | 0;
    socket.write(encodeAckFrame(this.socketSeq, { durableEnd, epoch: this.storage.latestEpoch }));
  }

  /** Level with the master by its last word (an ims master tells us its log end). */
  private updateLevel(): void {
    if (this.masterLogEnd === null) return;
    const level = this.storage.logEnd >= this.masterLogEnd;
    if (level) {
      if (!this.caughtUp) {
        this.logger.log(
          `caught up with master ${this.masterAddress} at ${this.storage.logEnd} (epoch ${this.masterEpoch})`,
        );
      }
      this.levelAt = Date.now();
    }
    this.caughtUp = level;
  }

  /**
   * An ims master's hello: its epoch and epoch history. A master from an older epoch than we have seen is
   * refused; where our log runs past the point at which the master's log parts from ours, our tail is cut
   * back to that point (kept aside) and we follow again from there.
   */
  private async onHello(hello: SyncHello, seq: number): Promise<'ok' | 'reconnect'> {
    const ours = this.storage.latestEpoch;
    if (hello.epoch < ours) {
      throw new SyncProtocolError(
        `frame seq ${seq}: the master is in epoch ${hello.epoch}, older than epoch ${ours} this node has seen; refusing its stream`,
      );
    }
    this.extended = true;
    this.masterEpoch = hello.epoch;
    this.masterLogEnd = hello.logEnd;
    const logEnd = this.storage.logEnd;
    const d = this.storage.compareWithMaster(hello.history, hello.logEnd);
    if (d.relation === 'ahead') {
      throw new SyncProtocolError(
        `frame seq ${seq}: our log runs past the master's end (${logEnd} > ${hello.logEnd}) within its own ` +
          `epoch ${d.commonEpoch}, which it has not moved on from; refusing to follow rather than cut records nothing contradicts`,
      );
    }
    if (d.relation === 'diverged') {
      // Records from before our first epoch (Go's, or an unrelated folder's) past the agreed point cannot
      // be proven the master's: never cut those. Records of our own epochs the master lacks are cut.
      const ours = this.storage.epochHistory();
      const preEpochEnd = ours.length > 0 ? ours[0].startId : logEnd;
      if (d.commonEpoch === IMPLICIT_EPOCH && preEpochEnd > d.agreedEnd) {
        // Records from before epochs (Go, or an unrelated folder) cannot be proven the master's: never cut them.
        throw new SyncProtocolError(
          `frame seq ${seq}: our log (end ${logEnd}) holds records from before epochs past ${d.agreedEnd}, ` +
            `where the master's log (epoch ${hello.epoch}, end ${hello.logEnd}) parts from it; refusing its stream ` +
            `(nothing proves they are the master's: follow it from an empty folder instead)`,
        );
      }
      const cut = await this.storage.truncateLog(d.agreedEnd);
      this.logger.warn(
        `our log ran past the master's (epoch ${hello.epoch}, common epoch ${d.commonEpoch}): cut back from ${logEnd} ` +
          `to ${d.agreedEnd}, ${cut.cutBytes} bytes kept aside in ${cut.keptAside.join(', ')}`,
      );
      // Cut first, then the history: a crash in between leaves the old history over a shorter log.
      this.storage.adoptEpochHistory(hello.history, d.agreedEnd);
      return 'reconnect';
    }
    this.storage.adoptEpochHistory(hello.history, d.agreedEnd);
    return 'ok';
  }

  private async applyFrame(frame: SyncFrame, socket: net.Socket): Promise<'ok' | 'reconnect'> {
    if (frame.cmd === Cmd.STORAGE_SYNC_HELLO) {
      if (this.extended)
        throw new SyncProtocolError(`frame seq ${frame.seq}: a second MSG_STORAGE_SYNC_HELLO`);
      const d = decodeHelloBody(frame.body);
      if (!d.ok) throw new SyncProtocolError(`frame seq ${frame.seq}: ${d.problem}`);
      const outcome = await this.onHello(d.value, frame.seq);
      if (outcome === 'ok') {
        this.socketSeq = (this.socketSeq + 1) | 0;
        socket.write(encodeIdentFrame(this.socketSeq, this.nodeName));
        this.ack(socket, true);
        this.updateLevel();
      }
      return outcome;
    }
    if (frame.cmd === Cmd.STORAGE_SYNC_HEARTBEAT) {
      if (!this.extended)
        throw new SyncProtocolError(`frame seq ${frame.seq}: MSG_STORAGE_SYNC_HEARTBEAT before any hello`);
      const d = decodeHeartbeatBody(frame.body);
      if (!d.ok) throw new SyncProtocolError(`frame seq ${frame.seq}: ${d.problem}`);
      if (this.masterEpoch !== null && d.value.epoch > this.masterEpoch) {
        // The same master leads again, in a new epoch (it lost and regained leadership while this link
        // stayed up): read its new history from a fresh hello rather than treat it as a protocol error.
        this.logger.log(
          `master ${this.masterAddress} began epoch ${d.value.epoch} (this link was opened in epoch ${this.masterEpoch}); reconnecting to read its epoch history`,
        );
        return 'reconnect';
      }
      if (d.value.epoch !== this.masterEpoch) {
        throw new SyncProtocolError(
          `frame seq ${frame.seq}: heartbeat of epoch ${d.value.epoch} on a link of epoch ${this.masterEpoch}`,
        );
      }
      this.masterLogEnd = d.value.logEnd;
      if (d.value.acknowledgedEnd !== undefined) this.masterAcknowledgedEnd = d.value.acknowledgedEnd;
      this.updateLevel();
      this.ack(socket);
      return 'ok';
    }
    if (frame.cmd === Cmd.STORAGE_SYNC_MESSAGE_BATCH) {
      const d = decodeBatchBody(frame.body);
      if (!d.ok) throw new SyncProtocolError(`batch frame seq ${frame.seq}: ${d.problem}`);
      const { firstId, lastId, messages } = d.value;
      if (messages.length === 0) return 'ok';
      const ids = batchRecordIds(firstId, messages, this.storage.blockSize);
      if (ids[ids.length - 1] !== lastId) {
        throw new SyncProtocolError(
          `batch frame seq ${frame.seq}: last_id ${lastId} does not match where its ${messages.length} messages from ${firstId} end (${ids[ids.length - 1]})`,
        );
      }
      await this.applyRecords(ids, messages, frame.seq);
      if (this.extended) {
        // Exact: the master's heartbeat after this batch says where its log ends.
        this.ack(socket);
        return 'ok';
      }
      const bytes = frame.body.length;
      const wasLevel = this.caughtUp;
      // A batch the master cut at its size limits means it has more right now.
      this.caughtUp = messages.length < LIVE_BATCH_MESSAGES && bytes < MAX_BATCH_BYTES / 2;
      if (this.caughtUp) {
        this.levelAt = Date.now();
        if (!wasLevel) {
          this.logger.log(
            `caught up with master ${this.masterAddress} at ${this.storage.logEnd} (last applied ${this.lastAppliedId})`,
          );
        }
      }
      return 'ok';
    }
    if (frame.cmd === Cmd.STORAGE_SYNC_MESSAGE) {
      const d = decodeSyncMessageBody(frame.body);
      if (!d.ok) throw new SyncProtocolError(`frame seq ${frame.seq}: ${d.problem}`);
      await this.applyRecords([d.value.msgId], [d.value.message], frame.seq);
      this.ack(socket);
      if (!this.extended) {
        this.caughtUp = true;
        this.levelAt = Date.now();
      }
      return 'ok';
    }
    if (frame.cmd === Cmd.STORAGE_SYNC_RETAINED_FROM) {
      const d = decodeRetainedFromBody(frame.body);
      if (!d.ok) throw new SyncProtocolError(`frame seq ${frame.seq}: ${d.problem}`);
      const { firstId } = d.value;
      const logEnd = this.storage.logEnd;
      if (logEnd >= firstId) return 'ok'; // not behind (any more): nothing to do
      const r = await this.storage.restartAt(firstId);
      this.logger.warn(
        `our log (end ${logEnd}) lies before master ${this.masterAddress}'s first retained record ${firstId}: ` +
          `deleted our ${r.deletedBlocks} block(s) (${r.bytes} bytes) and restarted the log at ${this.storage.logEnd}`,
      );
      return 'reconnect';
    }
    throw new SyncProtocolError(`frame seq ${frame.seq}: unexpected ${cmdName(frame.cmd)} from the master`);
  }

  private async applyRecords(ids: number[], messages: RawMessage[], seq: number): Promise<void> {
    const problem = continuationProblem(this.storage.logEnd, ids, messages, this.storage.blockSize);
    if (problem) throw new SyncProtocolError(`frame seq ${seq}: ${problem}`);
    // One file write for the whole batch (records we already have are skipped).
    const written = this.storage.applyReplicatedRecords(ids, messages);
    if (written > 0) this.lastAppliedId = ids[ids.length - 1];
    // On disk before we read more (or acknowledge): a restarted slave resumes from what is durable.
    await this.storage.whenDurable();
    this.recordsApplied += written;
    this.lastBatchAt = new Date();
  }

  /** Reads on this slave answer below this (see masterAcknowledgedEnd); null: no limit is known. */
  get acknowledgedEnd(): number | null {
    return this.masterAcknowledgedEnd;
  }

  status(): SlaveLinkStatus {
    return {
      masterAddress: this.masterAddress,
      connected: this.connected,
      connectedAt: this.connectedAt?.toISOString() ?? null,
      cursor: this.storage.isOpen ? this.storage.logEnd : 0,
      lastAppliedId: this.lastAppliedId,
      acknowledging: this.connected && this.extended,
      masterEpoch: this.masterEpoch,
      masterLogEnd: this.masterLogEnd,
      lagBytes:
        this.masterLogEnd === null || !this.storage.isOpen
          ? null
          : Math.max(0, this.masterLogEnd - this.storage.logEnd),
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
