/**
 * The master side of replication: accepts slaves on sync_listen and streams the log to each.
 *
 * Every slave connection keeps its own cursor and always reads from the log, so the backlog and the live
 * stream are one loop (read from the cursor to the sendable end, send, then wait for a write or a timer).
 * There is no hand-over from backlog to live stream where writes could be missed (Go bug 18), nothing
 * is queued for a slave beyond one batch, and a slow slave only lags: writers never wait for it (Go bug
 * 17). A slave that stops reading for too long, or falls too far behind once live, is dropped; it
 * reconnects and resumes from its own cursor.
 */
import * as net from 'node:net';
import { performance } from 'node:perf_hooks';
import * as tls from 'node:tls';
import { reportTlsFailures } from '../config/tls-options.js';
import { Cmd, cmdName } from '../format/constants.js';
import { recordSize, type RawMessage } from '../format/record.js';
import {
  BACKLOG_BATCH_MESSAGES,
  LIVE_BATCH_MESSAGES,
  MAX_BATCH_BYTES,
  MAX_NODE_NAME_BYTES,
  SYNC_BEGIN_BODY_SIZE,
  SYNC_FLAG_ACKNOWLEDGED_END,
  SYNC_FLAG_DURABLE_END,
  SYNC_FLAG_IMS_EXTENSIONS,
  decodeAckBody,
  decodeIdentBody,
  decodeSyncBeginBody,
  encodeBatchFrame,
  encodeHeartbeatFrame,
  encodeHelloFrame,
  encodeRetainedFromFrame,
  type EpochMark,
} from '../format/sync-frames.js';
import type { StorageService } from '../storage/storage.service.js';
import type { StorageLogger } from '../storage/storage-logger.js';
import type { DropReason, PendingBudget } from '../rpc/input-bounds.js';
import { UnfinishedFrameWatch } from '../rpc/input-bounds.js';
import { FrameReader } from './frame-reader.js';
import type { InSyncReplicas } from './in-sync-replicas.js';

export interface SyncMasterOptions {
  /** Live writes wait at most this long to be batched (Go: 1 s). */
  liveBatchDelayMs: number;
  /** A slave that reads nothing for this long while a batch waits for it is dropped. */
  stallTimeoutMs: number;
  /** A live slave more than this many bytes behind the log end is dropped. */
  maxLiveLagBytes: number;
  /** A connection that sends no MSG_STORAGE_SYNC_BEGIN within this time is closed. */
  handshakeTimeoutMs: number;
  /**
   * Send a Go slave only what is on disk (durability=sync), or everything written (interval). An ims slave
   * always gets everything written (see sendableEnd).
   */
  durableOnly: boolean;
  /** An ims slave hears from an idle master this often (its log end, so lag is exact when idle). */
  heartbeatMs: number;
  /** This master's epoch and epoch history, told to ims slaves. */
  epoch: () => { epoch: number; history: EpochMark[] };
  /** Serve TLS (with a CA: slaves must present a certificate it signed). Go slaves cannot speak TLS. */
  tls?: tls.TlsOptions;
  /** Applies max_connections to the listener. */
  limitConnections?: (server: net.Server) => void;
  /** The end below which saves are acknowledged (told to ims slaves; default: the log end). */
  acknowledgedEnd?: () => number;
  /** Why this node serves no slaves now (cluster mode: it does not lead), or null. */
  slaveRefusal?: () => string | null;
  /** A slave's unfinished frame that receives nothing this long drops it (incomplete_frame_timeout_ms). */
  incompleteFrameMs?: number;
  /** The process's input budget (max_pending_bytes) and drop counters, shared with the RPC listeners. */
  bounds?: PendingBudget & {
    noteDrop(what: string, address: string, reason: DropReason, detail: string): void;
  };
}

export interface SlaveStatus {
  address: string;
  connectedAt: string;
  /** Cursor the slave started from. */
  startCursor: number;
  /** The id the slave's next record gets, after everything sent to it so far. */
  cursor: number;
  /** ims slave: speaks the extensions (acknowledgements, heartbeats, epochs). A Go slave does not. */
  acknowledging: boolean;
  /** ims slave: the end of what it has on disk, by its last acknowledgement (null for a Go slave). */
  ackedEnd: number | null;
  /** Bytes of log the slave does not hold yet: by acknowledgement for an ims slave, by what was sent otherwise. */
  lagBytes: number;
  /** ims slave: milliseconds since the oldest write it has not acknowledged (0: holds everything). */
  lagMs: number | null;
  /** ims slave: in the in-sync set (min_insync_replicas counts these). */
  inSync: boolean | null;
  lastAckAt: string | null;
  caughtUp: boolean;
  batchesSent: number;
  recordsSent: number;
  lastSendAt: string | null;
}

interface LogRecord {
  id: number;
  msg: RawMessage;
}

class SlaveSession {
  readonly address: string;
  readonly connectedAt = new Date();
  private closed = false;
  private started = false;
  private startCursor = 0;
  private readTo = 0;
  private sentTo = 0;
  private pending: LogRecord[] = [];
  private pendingBytes = 0;
  private pendingSince = 0;
  private caughtUp = false;
  private seq = 0;
  private batchesSent = 0;
  private recordsSent = 0;
  private lastSendAt: Date | null = null;
  private wakeUp: (() => void) | null = null;
  private reader: FrameReader;
  private readonly handshakeTimer: NodeJS.Timeout;
  /** The slave asked for the ims extensions (an ims slave). */
  private extended = false;
  /** The slave asked for the acknowledged end in heartbeats; the last one it was told. */
  private wantsAcknowledgedEnd = false;
  private toldAcknowledgedEnd = -1;
  /** The reader asked for the durable end in the hello (ims backup: it copies only what is on disk). */
  private wantsDurableEnd = false;
  private acknowledged = false;
  /** What an ims slave calls itself (its node name), for the in-sync set a cluster keeps in etcd. */
  private nodeName: string | null = null;
  private lastFrameAt = 0;
  /** What a slave has sent of a frame not yet whole, under the input bounds. */
  private readonly unfinished: UnfinishedFrameWatch;

  constructor(
    private readonly master: SyncMaster,
    private readonly socket: net.Socket,
  ) {
    this.address = `${socket.remoteAddress}:${socket.remotePort}`;
    const bounds = master.options.bounds;
    this.unfinished = new UnfinishedFrameWatch(
      {
        address: this.address,
        drop: (reason, detail) => {
          // Counted and logged (one line) as the RPC listeners' drops are.
          bounds?.noteDrop('sync', this.address, reason, detail);
          this.drop(detail, bounds ? null : 'warn');
        },
      },
      bounds,
      master.options.incompleteFrameMs,
    );
    this.reader = new FrameReader(SYNC_BEGIN_BODY_SIZE, (h) =>
      h.cmd !== Cmd.STORAGE_SYNC_BEGIN
        ? `expected MSG_STORAGE_SYNC_BEGIN (${Cmd.STORAGE_SYNC_BEGIN}), got ${cmdName(h.cmd)}`
        : h.length !== SYNC_BEGIN_BODY_SIZE
          ? `MSG_STORAGE_SYNC_BEGIN body length is ${h.length}, expected ${SYNC_BEGIN_BODY_SIZE}`
          : null,
    );
    this.handshakeTimer = setTimeout(
      () =>
        this.drop(`sent no MSG_STORAGE_SYNC_BEGIN within ${master.options.handshakeTimeoutMs} ms`, 'warn'),
      master.options.handshakeTimeoutMs,
    );
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.drop(`socket error: ${err.message}`, 'log'));
    socket.on('close', () => this.onClose());
  }

  private get log(): StorageLogger {
    return this.master.logger;
  }

  private onData(chunk: Buffer): void {
    if (this.closed) return;
    if (this.started) {
      // A Go slave has nothing more to say; whatever it sends is ignored (as Go does).
      if (this.extended) this.onAcks(chunk);
      return;
    }
    this.reader.push(chunk);
    let frame;
    try {
      frame = this.reader.next();
    } catch (err) {
      this.drop(`refused: ${(err as Error).message}`, 'warn');
      return;
    }
    this.unfinished.update(this.reader.bufferedBytes);
    if (!frame) return;
    const cursor = decodeSyncBeginBody(frame.body);
    if (!cursor.ok) {
      this.drop(`refused: ${cursor.problem}`, 'warn');
      return;
    }
    clearTimeout(this.handshakeTimer);
    this.extended = (frame.flag & SYNC_FLAG_IMS_EXTENSIONS) !== 0;
    this.wantsAcknowledgedEnd = this.extended && (frame.flag & SYNC_FLAG_ACKNOWLEDGED_END) !== 0;
    this.wantsDurableEnd = this.extended && (frame.flag & SYNC_FLAG_DURABLE_END) !== 0;
    const refusal = this.master.options.slaveRefusal?.() ?? null;
    if (refusal) {
      this.drop(`refused: ${refusal}`, 'log');
      return;
    }
    if (this.extended) {
      // From now on an ims slave sends only acknowledgements, each checked whole before it counts.
      this.reader = new FrameReader(MAX_NODE_NAME_BYTES, (h) =>
        h.cmd !== Cmd.STORAGE_SYNC_ACK && h.cmd !== Cmd.STORAGE_SYNC_IDENT
          ? `expected MSG_STORAGE_SYNC_ACK (${Cmd.STORAGE_SYNC_ACK}), got ${cmdName(h.cmd)}`
          : null,
      );
    }
    this.begin(cursor.value);
  }

  private onAcks(chunk: Buffer): void {
    this.reader.push(chunk);
    try {
      for (let frame = this.reader.next(); frame; frame = this.reader.next()) {
        if (frame.cmd === Cmd.STORAGE_SYNC_IDENT) {
          const ident = decodeIdentBody(frame.body);
          if (!ident.ok) throw new Error(ident.problem);
          if (this.acknowledged || this.nodeName !== null)
            throw new Error('MSG_STORAGE_SYNC_IDENT after the first acknowledgement');
          this.nodeName = ident.value;
          continue;
        }
        const ack = decodeAckBody(frame.body);
        if (!ack.ok) throw new Error(ack.problem);
        const { epoch } = this.master.options.epoch();
        if (ack.value.epoch > epoch) {
          this.drop(
            `refused: the slave has seen epoch ${ack.value.epoch}, newer than this master's ${epoch}; another master has taken over`,
            'error',
          );
          return;
        }
        if (ack.value.durableEnd > this.sentTo)
          throw new Error(`acknowledges ${ack.value.durableEnd}, past what was sent (${this.sentTo})`);
        // A replica counts from its first acknowledgement: it has accepted this master's history then.
        if (!this.acknowledged) {
          this.master.replicas.addReplica(this, this.nodeName ?? this.address, ack.value.durableEnd);
        }
        this.acknowledged = true;
        this.master.replicas.ack(this, ack.value.durableEnd);
        this.master.acknowledgedEndMoved();
      }
    } catch (err) {
      this.drop(`refused a malformed extension frame: ${(err as Error).message}; link dropped`, 'error');
      return;
    }
    this.unfinished.update(this.reader.bufferedBytes);
  }

  private begin(requested: number): void {
    const storage = this.master.storage;
    const logEnd = storage.logEnd;
    // An empty block's cursor may be given as its start; records begin after the header.
    const cursor = storage.firstRecordAtOrAfter(requested);
    if (this.extended) {
      // An ims slave learns this master's epoch history before any record, so it can find where its
      // own log diverged (and cut its tail back) before it applies anything.
      const { epoch, history } = this.master.options.epoch();
      this.socket.write(
        encodeHelloFrame(this.nextSeq(), {
          epoch,
          // A backup copies what can never be cut: on disk here and, in cluster mode, acknowledged.
          logEnd: this.wantsDurableEnd
            ? Math.min(storage.durableEnd, this.master.acknowledgedEnd())
            : this.master.sendableEnd(this.extended),
          history,
        }),
      );
      this.lastFrameAt = performance.now();
      if (cursor > logEnd) {
        this.log.warn(
          `slave ${this.address} is past the end of this log (cursor ${requested}, log end ${logEnd}): its log ` +
            `has diverged; told it epoch ${epoch} and its history so it can find where and cut its tail`,
        );
        this.closed = true;
        clearTimeout(this.handshakeTimer);
        this.socket.end();
        this.master.remove(this);
        return;
      }
    }
    if (cursor > logEnd) {
      this.drop(
        `refused: cursor ${requested} is past the end of this log (${logEnd}); the slave's log has diverged`,
        'error',
      );
      return;
    }
    const firstId = storage.firstId;
    if (cursor < firstId) {
      if (this.extended) {
        // An ims slave is told where this log now starts; it restarts its log there and reconnects.
        this.socket.write(encodeRetainedFromFrame(this.nextSeq(), firstId));
        this.log.warn(
          `slave ${this.address} is behind this log's retention (cursor ${requested}, the log starts at ` +
            `${firstId}): told it to restart from ${firstId}`,
        );
        this.closed = true;
        clearTimeout(this.handshakeTimer);
        this.socket.end();
        this.master.remove(this);
        return;
      }
      // A Go slave cannot be told: streaming from the first retained block would leave a hole in its log
      // (Go skips records more than one block ahead, or pads to them), so it is refused.
      this.drop(
        `refused: cursor ${requested} lies in blocks deleted by retention (this log starts at ${firstId}); ` +
          `a Go slave cannot restart there without a hole in its log. Seed it again from a copy of this ` +
          `folder (ims backup) and restart it`,
        'error',
      );
      return;
    }
    this.started = true;
    this.startCursor = requested;
    this.readTo = cursor;
    this.sentTo = cursor;
    this.log.log(
      `${this.extended ? 'ims' : 'Go'} slave ${this.address} began sync at cursor ${requested} (log end ${logEnd})`,
    );
    void this.run();
  }

  /** An ims slave (it sends the extensions flag): it gets records before they are on the master's disk. */
  get isExtended(): boolean {
    return this.extended;
  }

  wake(): void {
    const w = this.wakeUp;
    this.wakeUp = null;
    w?.();
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.wake(), Math.max(0, ms));
      this.wakeUp = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  private nextSeq(): number {
    this.seq = (this.seq + 1) | 0;
    return this.seq;
  }

  /**
   * Tells an ims slave the log end (after each batch, and when idle every heartbeatMs), and the
   * acknowledged end when it asked for it (also as soon as that moves: its readers wait for it).
   */
  heartbeat(): void {
    if (!this.extended || this.closed || !this.started) return;
    const { epoch } = this.master.options.epoch();
    const logEnd = this.master.sendableEnd(this.extended);
    let acknowledgedEnd: number | undefined;
    if (this.wantsAcknowledgedEnd) {
      acknowledgedEnd = Math.min(this.master.acknowledgedEnd(), logEnd);
      this.toldAcknowledgedEnd = acknowledgedEnd;
    }
    this.socket.write(
      encodeHeartbeatFrame(this.nextSeq(), { epoch, logEnd, sentAt: Date.now(), acknowledgedEnd }),
    );
    this.lastFrameAt = performance.now();
  }

  /** Whether the slave's last heartbeat told it less than the acknowledged end `end`. */
  behindOnAcknowledgedEnd(end: number): boolean {
    return this.wantsAcknowledgedEnd && this.started && !this.closed && end > this.toldAcknowledgedEnd;
  }

  private async run(): Promise<void> {
    const opts = this.master.options;
    const storage = this.master.storage;
    try {
      while (!this.closed) {
        const end = this.master.sendableEnd(this.extended);
        const logEnd = storage.logEnd;
        if (this.caughtUp && logEnd - this.sentTo > opts.maxLiveLagBytes) {
          this.drop(
            `fell ${logEnd - this.sentTo} bytes behind the log end (limit ${opts.maxLiveLagBytes}); ` +
              `dropped, it resumes from its cursor when it reconnects`,
            'warn',
          );
          return;
        }
        const limit = this.caughtUp ? LIVE_BATCH_MESSAGES : BACKLOG_BATCH_MESSAGES;
        if (this.readTo < end && this.pending.length < limit && this.pendingBytes < MAX_BATCH_BYTES) {
          const r = storage.readLog(
            this.readTo,
            end,
            limit - this.pending.length,
            MAX_BATCH_BYTES - this.pendingBytes,
          );
          // A batch never spans two blocks: the slave derives each id from first_id.
          if (
            r.records.length > 0 &&
            this.pending.length > 0 &&
            storage.blockOf(r.records[0].id) !== storage.blockOf(this.pending[0].id)
          ) {
            await this.sendPending();
            if (this.closed) return;
          }
          if (r.records.length > 0 && this.pending.length === 0) this.pendingSince = performance.now();
          for (const rec of r.records) {
            this.pending.push(rec);
            this.pendingBytes += 12 + rec.msg.body.length;
          }
          if (r.records.length === 0 && r.next === this.readTo) {
            throw new Error(`the log does not advance at ${this.readTo} (end ${end})`);
          }
          this.readTo = r.next;
        }
        const full = this.pending.length >= limit || this.pendingBytes >= MAX_BATCH_BYTES;
        const behind = this.readTo < end;
        if (this.pending.length > 0) {
          // An ims slave gets every record at once: saves may be waiting for its acknowledgement.
          const due = this.extended || performance.now() - this.pendingSince >= opts.liveBatchDelayMs;
          // Catching up, send at once; a live Go slave waits for 1000 messages or the batch delay (Go's rule).
          if (full || behind || !this.caughtUp || due) {
            await this.sendPending();
            continue;
          }
        } else if (!this.caughtUp && !behind) {
          this.caughtUp = true;
          this.log.log(
            `slave ${this.address} caught up at ${this.sentTo} (${this.recordsSent} records in ${this.batchesSent} batches)`,
          );
        }
        if (behind) continue;
        let wait =
          this.pending.length > 0 ? this.pendingSince + opts.liveBatchDelayMs - performance.now() : 1000;
        if (this.extended) {
          const sinceFrame = performance.now() - this.lastFrameAt;
          if (sinceFrame >= opts.heartbeatMs) this.heartbeat();
          wait = Math.min(
            wait,
            opts.heartbeatMs - Math.min(sinceFrame, opts.heartbeatMs) || opts.heartbeatMs,
          );
        }
        await this.sleep(wait);
      }
    } catch (err) {
      this.drop(`stream failed at ${this.readTo}: ${(err as Error).message}`, 'error');
    }
  }

  private async sendPending(): Promise<void> {
    const recs = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    if (recs.length === 0 || this.closed) return;
    const last = recs[recs.length - 1];
    const frame = encodeBatchFrame(
      this.nextSeq(),
      recs[0].id,
      last.id,
      recs.map((r) => r.msg),
    );
    // The batch and the heartbeat that follows it go out in one write.
    this.socket.cork();
    const flushed = this.socket.write(frame);
    this.sentTo = last.id + recordSize(last.msg.body.length);
    this.batchesSent++;
    this.recordsSent += recs.length;
    this.lastSendAt = new Date();
    this.heartbeat();
    this.socket.uncork();
    if (!flushed) await this.waitDrain();
  }

  /** Socket backpressure: wait until the slave has read what was sent, or drop it when it stalls. */
  private waitDrain(): Promise<void> {
    const ms = this.master.options.stallTimeoutMs;
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.socket.off('drain', done);
        this.socket.off('close', done);
        resolve();
      };
      const timer = setTimeout(() => {
        done();
        this.drop(
          `stalled: read nothing for ${ms} ms with ${this.socket.writableLength} bytes waiting ` +
            `(${this.master.storage.logEnd - this.sentTo} bytes behind); dropped, it resumes from its cursor when it reconnects`,
          'warn',
        );
      }, ms);
      this.socket.once('drain', done);
      this.socket.once('close', done);
    });
  }

  /** Closes the connection, logging why. */
  /** Closes the link, saying why at `level` (null: already logged). */
  drop(reason: string, level: 'log' | 'warn' | 'error' | null): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.handshakeTimer);
    this.unfinished.stop();
    if (level) this.log[level](`slave ${this.address}: ${reason}`);
    this.socket.destroy();
    this.wake();
    this.master.remove(this);
  }

  private onClose(): void {
    if (!this.closed) {
      this.closed = true;
      clearTimeout(this.handshakeTimer);
      this.unfinished.stop();
      this.log.log(
        this.started
          ? `slave ${this.address} disconnected at ${this.sentTo}`
          : `connection from ${this.address} closed before MSG_STORAGE_SYNC_BEGIN`,
      );
      this.wake();
      this.master.remove(this);
    }
  }

  status(): SlaveStatus | null {
    if (!this.started) return null;
    const r = this.extended ? this.master.replicas.state(this) : null;
    const end = this.master.sendableEnd(this.extended);
    return {
      address: this.address,
      connectedAt: this.connectedAt.toISOString(),
      startCursor: this.startCursor,
      cursor: this.sentTo,
      acknowledging: this.extended,
      ackedEnd: r?.ackedEnd ?? null,
      lagBytes: Math.max(0, end - (r ? r.ackedEnd : this.sentTo)),
      lagMs: r?.lagMs ?? null,
      inSync: r?.inSync ?? null,
      lastAckAt: r ? new Date(r.lastAckAt).toISOString() : null,
      caughtUp: r ? r.ackedEnd >= end : this.caughtUp,
      batchesSent: this.batchesSent,
      recordsSent: this.recordsSent,
      lastSendAt: this.lastSendAt?.toISOString() ?? null,
    };
  }
}

export class SyncMaster {
  private server: net.Server | null = null;
  private readonly sessions = new Set<SlaveSession>();
  private unsubscribe: (() => void) | null = null;
  private listening: string | null = null;
  private durableWaiter = false;

  constructor(
    readonly storage: StorageService,
    readonly logger: StorageLogger,
    readonly options: SyncMasterOptions,
    readonly replicas: InSyncReplicas,
  ) {}

  /** Subscribes to writes (start-up step 3). */
  prepare(): void {
    if (this.unsubscribe) return;
    this.unsubscribe = this.storage.onWrite(() => {
      this.replicas.noteWrite(this.storage.logEnd);
      if (this.sessions.size === 0) return;
      let waitsForDisk = false;
      for (const s of this.sessions) {
        if (this.options.durableOnly && !s.isExtended) waitsForDisk = true;
        else s.wake();
      }
      if (waitsForDisk) this.wakeWhenDurable();
    });
  }

  /**
   * One durability waiter at a time, not one per write: when it fires the slaves are woken, and if the
   * log grew meanwhile the next waiter covers everything written since.
   */
  private wakeWhenDurable(): void {
    if (this.durableWaiter) return;
    this.durableWaiter = true;
    const end = this.storage.logEnd;
    this.storage.whenDurable(end).then(
      () => {
        this.durableWaiter = false;
        this.wakeAll();
        if (this.storage.isOpen && this.storage.logEnd > end && this.sessions.size > 0)
          this.wakeWhenDurable();
      },
      () => {
        this.durableWaiter = false;
      },
    );
  }

  private heartbeatQueued = false;

  /** The master's acknowledged end (its readers' limit), told to ims slaves that asked for it. */
  acknowledgedEnd(): number {
    return this.options.acknowledgedEnd?.() ?? this.storage.logEnd;
  }

  /**
   * An acknowledgement may have moved the acknowledged end: slaves that asked for it hear it in the
   * same turn of the event loop (one heartbeat each, however many acknowledgements arrived).
   */
  acknowledgedEndMoved(): void {
    if (this.heartbeatQueued) return;
    this.heartbeatQueued = true;
    setImmediate(() => {
      this.heartbeatQueued = false;
      const end = this.acknowledgedEnd();
      for (const s of this.sessions) if (s.behindOnAcknowledgedEnd(end)) s.heartbeat();
    });
  }

  /** Closes every slave's link (this node stopped leading: its followers find the new master). */
  dropSlaves(reason: string): void {
    for (const s of [...this.sessions]) s.drop(reason, 'log');
  }

  private wakeAll(): void {
    for (const s of this.sessions) s.wake();
  }

  /**
   * The end of what may be sent to a slave. An ims slave gets every record as soon as it is written, so
   * that its write and fdatasync overlap the master's own (a save is acknowledged only once both cover
   * it); should the master lose an un-fsynced tail, its next epoch makes such a slave cut that tail back.
   * A Go slave cannot cut a tail back: with durability=sync it gets only records on the master's disk.
   */
  sendableEnd(imsSlave: boolean): number {
    return this.options.durableOnly && !imsSlave ? this.storage.durableEnd : this.storage.logEnd;
  }

  listen(host: string | undefined, port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const accept = (socket: net.Socket) => {
        socket.setNoDelay(true);
        socket.setKeepAlive(true, 60_000);
        this.sessions.add(new SlaveSession(this, socket));
      };
      const tlsOptions = this.options.tls;
      const server = tlsOptions ? tls.createServer(tlsOptions, accept) : net.createServer(accept);
      if (tlsOptions)
        reportTlsFailures(server as tls.Server, (peer, cause) =>
          this.logger.warn(`sync: TLS handshake with ${peer} failed: ${cause}`),
        );
      this.options.limitConnections?.(server);
      server.once('error', reject);
      server.listen({ host, port }, () => {
        server.off('error', reject);
        server.on('error', (err) => this.logger.error(`sync listener: ${err.message}`));
        this.server = server;
        const a = server.address() as net.AddressInfo;
        this.listening = `${a.address}:${a.port}`;
        resolve();
      });
    });
  }

  get address(): string | null {
    return this.listening;
  }

  remove(session: SlaveSession): void {
    this.sessions.delete(session);
    this.replicas.removeReplica(session);
  }

  slaves(): SlaveStatus[] {
    const out: SlaveStatus[] = [];
    for (const s of this.sessions) {
      const st = s.status();
      if (st) out.push(st);
    }
    return out;
  }

  async close(): Promise<void> {
    this.unsubscribe?.();
    this.unsubscribe = null;
    for (const s of [...this.sessions]) s.drop('closed: the server is shutting down', 'log');
    const server = this.server;
    this.server = null;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
