/**
 * The in-sync replica set of a master and the acknowledgement rule built on it (min_insync_replicas),
 * in the manner of Kafka's ISR: a replica is in sync while every record written more than
 * `replica_lag_timeout_ms` ago is on its disk (it said so with an acknowledgement). One that lags leaves
 * the set, with a log line; one that catches up rejoins. A save waits until at least N in-sync replicas
 * hold it; with fewer than N in sync it fails at once, and a save that is waiting fails as soon as the set
 * shrinks below N: a save never hangs and is never acknowledged without its copies.
 */
import { performance } from 'node:perf_hooks';
import type { AckGate } from '../storage/storage.service.js';
import type { StorageLogger } from '../storage/storage-logger.js';
import { NotEnoughReplicasError, ReplicasShrankError, ShutdownBeforeAckError } from './ack-errors.js';

export { NotEnoughReplicasError };

export interface ReplicaState {
  /** The end of what the replica has on disk, by its last acknowledgement. */
  ackedEnd: number;
  lastAckAt: number;
  inSync: boolean;
  /** Milliseconds since the oldest write the replica has not acknowledged (0: it holds everything). */
  lagMs: number;
}

interface Waiter {
  end: number;
  resolve: () => void;
  reject: (err: Error) => void;
}

export interface InSyncOptions {
  minInsync: number;
  lagTimeoutMs: number;
  /** The end of the log that replicas are expected to hold (what the master may send). */
  sendableEnd: () => number;
}

/**
 * Cluster mode (Kafka's rule): a save waits for every in-sync replica, not just N of them, so any member
 * of the set holds everything acknowledged and may win an election. The set is recorded (in etcd) by
 * `record`; a replica leaves only once the smaller set is recorded, and joins only when it holds
 * everything acknowledged so far.
 */
export interface RecordedMembership {
  record: (names: string[]) => Promise<void>;
}

export class InSyncReplicas implements AckGate {
  private readonly replicas = new Map<
    object,
    ReplicaState & { name: string; leaving: boolean; disconnected?: boolean }
  >();
  private membership: RecordedMembership | null = null;
  private recording: Promise<void> = Promise.resolve();
  /**
   * The acknowledged end (Kafka's high watermark): every record below it is held by the master and by
   * every in-sync replica. A replica joins only once it holds it. A master's term starts it at the
   * master's log end (KAFKA-7128): what the previous master acknowledged lies somewhere below, and a
   * replica that holds less must not be counted in sync.
   */
  private acknowledgedEnd = 0;
  /**
   * When the log grew past each position: (end, time) pairs, oldest first, coalesced per millisecond.
   * Times are monotonic (a wall-clock step must not make every replica lag, or none).
   */
  private writes: { end: number; at: number }[] = [];
  private waiters: Waiter[] = [];
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly options: InSyncOptions,
    private readonly logger: StorageLogger,
  ) {}

  start(): void {
    this.timer ??= setInterval(
      () => this.evaluate(),
      Math.max(20, Math.min(250, this.options.lagTimeoutMs / 10)),
    );
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    const err = new ShutdownBeforeAckError();
    for (const w of this.waiters.splice(0)) w.reject(err);
    // A stopping master records nothing more: its replicas disconnect because it stops, and a set
    // recorded without them would leave no node eligible to take over.
    this.membership = null;
    this.replicas.clear();
  }

  /**
   * A master's term begins with its log ending at `logEnd`: replicas of an earlier term are forgotten
   * (their sessions were closed), and none joins before it holds `logEnd`.
   */
  beginTerm(logEnd: number): void {
    this.acknowledgedEnd = logEnd;
    this.replicas.clear();
    this.writes = [];
  }

  /**
   * The end below which reads may answer: acknowledged saves only. `localEnd` is what the master's own
   * acknowledgement needs (its durable end with durability=sync, its log end otherwise).
   */
  highWatermark(localEnd: number): number {
    const min = this.options.minInsync;
    let end = localEnd;
    if (min === 0) {
      // Acknowledged after the local write alone: nothing to wait for.
    } else if (this.membership) {
      // Cluster mode: every member holds it (leaving ones too, until recorded without them).
      let members = 0;
      for (const r of this.replicas.values()) {
        if (!r.inSync) continue;
        end = Math.min(end, r.ackedEnd);
        if (!r.leaving) members++;
      }
      if (members < min) end = 0;
    } else if (min > 0) {
      // min_insync_replicas of them hold it.
      const held: number[] = [];
      for (const r of this.replicas.values()) if (r.inSync) held.push(r.ackedEnd);
      held.sort((a, b) => b - a);
      end = held.length >= min ? Math.min(end, held[min - 1]) : 0;
    }
    if (end > this.acknowledgedEnd) this.acknowledgedEnd = end;
    return Math.min(this.acknowledgedEnd, localEnd);
  }

  /** Cluster mode on (with how the set is recorded) or off (null). Records the current set at once. */
  setMembership(membership: RecordedMembership | null): Promise<void> {
    this.membership = membership;
    return membership ? this.recordMembers() : Promise.resolve();
  }

  /** Names of the replicas in the set (leaving ones excluded: the record must not vouch for them). */
  members(): string[] {
    const out: string[] = [];
    for (const r of this.replicas.values()) if (r.inSync && !r.leaving) out.push(r.name);
    return out.sort();
  }

  /** Records the set as it is when the record is written; records are written one at a time, in order. */
  private recordMembers(): Promise<void> {
    const m = this.membership;
    if (!m) return Promise.resolve();
    // A failed record does not stop later ones: each is tried in its turn.
    const next = this.recording.catch(() => undefined).then(() => m.record(this.members()));
    this.recording = next;
    return next;
  }

  /** A replica leaves: once the set without it is recorded (cluster mode), or at once. */
  private leave(key: object, r: ReplicaState & { name: string; leaving: boolean }, why: string): void {
    if (!this.membership) {
      r.inSync = false;
      this.logger.warn(`replica ${r.name} left the in-sync set: ${why}`);
      return;
    }
    if (r.leaving) return;
    r.leaving = true;
    this.recordMembers().then(
      () => {
        r.inSync = false;
        r.leaving = false;
        if (this.replicas.get(key) !== r) return;
        this.logger.warn(`replica ${r.name} left the in-sync set: ${why}`);
        this.evaluate();
      },
      (err: Error) => {
        r.leaving = false;
        if (!this.membership) return; // stopped or stepped down meanwhile: nothing is required any more
        this.logger.error(
          `could not record the in-sync set without ${r.name}: ${err.message}; it stays required`,
        );
      },
    );
  }

  /** Fails every save waiting for acknowledgements (the master stepped down). */
  failWaiters(err: Error): void {
    for (const w of this.waiters.splice(0)) w.reject(err);
  }

  /** The log grew to `end` (called on every write). */
  noteWrite(end: number): void {
    const now = Math.floor(performance.now());
    const last = this.writes[this.writes.length - 1];
    if (last && last.at === now) last.end = end;
    else this.writes.push({ end, at: now });
  }

  addReplica(key: object, name: string, ackedEnd: number): void {
    this.replicas.set(key, {
      name,
      ackedEnd,
      lastAckAt: Date.now(),
      inSync: false,
      lagMs: 0,
      leaving: false,
    });
    this.evaluate();
  }

  removeReplica(key: object): void {
    const r = this.replicas.get(key);
    if (!r) return;
    // Gone for good: it must not be counted as joining again while its removal is recorded.
    r.disconnected = true;
    if (r.inSync && this.membership) {
      // Still required (its position frozen) until the set without it is recorded.
      this.leave(key, r, 'disconnected');
      void this.recording
        .catch(() => undefined)
        .then(() => {
          if (this.replicas.get(key) === r && !r.leaving) this.replicas.delete(key);
          this.evaluate();
        });
      return;
    }
    this.replicas.delete(key);
    if (r.inSync) this.logger.warn(`replica ${r.name} left the in-sync set: disconnected`);
    this.evaluate();
  }

  ack(key: object, durableEnd: number): void {
    const r = this.replicas.get(key);
    if (!r) return;
    if (durableEnd > r.ackedEnd) r.ackedEnd = durableEnd;
    r.lastAckAt = Date.now();
    this.evaluate();
  }

  state(key: object): ReplicaState | null {
    const r = this.replicas.get(key);
    return r ? { ackedEnd: r.ackedEnd, lastAckAt: r.lastAckAt, inSync: r.inSync, lagMs: r.lagMs } : null;
  }

  get inSyncCount(): number {
    let n = 0;
    for (const r of this.replicas.values()) if (r.inSync && !r.leaving) n++;
    return n;
  }

  get required(): number {
    return this.options.minInsync;
  }

  // ---- AckGate ---------------------------------------------------------------------------------------

  admit(): void {
    const n = this.inSyncCount;
    if (n < this.options.minInsync) throw new NotEnoughReplicasError(n, this.options.minInsync);
  }

  whenAcknowledged(end: number): Promise<void> {
    if (this.acknowledged(end)) {
      this.acknowledgedEnd = Math.max(this.acknowledgedEnd, end);
      return Promise.resolve();
    }
    const n = this.inSyncCount;
    // Already written (this runs after the write): the may-be-stored kind, not "nothing written".
    if (n < this.options.minInsync) return Promise.reject(new ReplicasShrankError(n, this.options.minInsync));
    return new Promise((resolve, reject) => this.waiters.push({ end, resolve, reject }));
  }

  // ----------------------------------------------------------------------------------------------------

  /** Whether a save ending at `end` may be acknowledged now. */
  private acknowledged(end: number): boolean {
    if (!this.membership) return this.options.minInsync === 0 || this.holders(end) >= this.options.minInsync;
    // Cluster mode: every member (leaving ones too, until recorded without them) holds it.
    let members = 0;
    for (const r of this.replicas.values()) {
      if (!r.inSync) continue;
      if (r.ackedEnd < end) return false;
      if (!r.leaving) members++;
    }
    return members >= this.options.minInsync;
  }

  /** In-sync replicas that hold the log up to `end`. */
  private holders(end: number): number {
    let n = 0;
    for (const r of this.replicas.values()) if (r.inSync && r.ackedEnd >= end) n++;
    return n;
  }

  /** Age of the oldest write past `ackedEnd`, or 0 when the replica holds everything sendable. */
  private lagOf(ackedEnd: number, now: number): number {
    if (ackedEnd >= this.options.sendableEnd()) return 0;
    for (const w of this.writes) if (w.end > ackedEnd) return now - w.at;
    // Older than anything remembered: at least as old as the oldest entry.
    return this.writes.length > 0 ? now - this.writes[0].at : this.options.lagTimeoutMs + 1;
  }

  private evaluate(): void {
    const now = performance.now();
    const timeout = this.options.lagTimeoutMs;
    // Writes older than twice the timeout no longer decide anything once every replica is past them.
    let minAcked = Infinity;
    for (const r of this.replicas.values()) minAcked = Math.min(minAcked, r.ackedEnd);
    while (
      this.writes.length > 1 &&
      this.writes[0].at < now - 2 * timeout &&
      (this.writes[0].end <= minAcked || this.writes.length > 100_000)
    ) {
      this.writes.shift();
    }
    for (const r of this.replicas.values()) {
      r.lagMs = this.lagOf(r.ackedEnd, now);
      const lagging = r.lagMs > timeout;
      if (r.inSync && lagging) {
        this.leave(
          [...this.replicas.entries()].find(([, v]) => v === r)![0],
          r,
          `it has not acknowledged a record written ${r.lagMs} ms ago ` +
            `(replica_lag_timeout_ms ${timeout}; acknowledged up to ${r.ackedEnd})`,
        );
      } else if (!r.inSync && !lagging && !r.disconnected && r.ackedEnd >= this.acknowledgedEnd) {
        r.inSync = true;
        this.logger.log(`replica ${r.name} joined the in-sync set (acknowledged up to ${r.ackedEnd})`);
        void this.recordMembers().catch((err: Error) =>
          this.logger.warn(`could not record the in-sync set with ${r.name}: ${err.message}`),
        );
      }
    }
    if (this.waiters.length === 0) return;
    const required = this.options.minInsync;
    const inSync = this.inSyncCount;
    const still: Waiter[] = [];
    let leaving = false;
    for (const r of this.replicas.values()) if (r.leaving) leaving = true;
    for (const w of this.waiters) {
      if (this.acknowledged(w.end)) {
        this.acknowledgedEnd = Math.max(this.acknowledgedEnd, w.end);
        w.resolve();
      } else if (inSync < required && !leaving) w.reject(new ReplicasShrankError(inSync, required));
      else still.push(w);
    }
    this.waiters = still;
  }
}
