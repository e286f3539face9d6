/**
 * Whether this node's etcd lease, and so its leadership, is proven now. Counted on the monotonic clock
 * (a wall-clock step must not extend it) from the *send* time of a renewal etcd answered: etcd restarts
 * the lease's TTL no earlier than when it receives the renewal, so the lease lives at least until that
 * send time + TTL. Each renewal is paired with its own answer (one request per stream): answers that
 * arrive late, or on a stream torn down meanwhile, are never credited to a later send. A leader stops
 * acknowledging `marginMs` before the proven end (clock rates differ slightly).
 */
import { performance } from 'node:perf_hooks';

export type MonotonicClock = () => number;

export const monotonicNow: MonotonicClock = () => performance.now();

export class LeaseFence {
  private provenUntil = -Infinity;

  constructor(
    private readonly ttlMs: number,
    private readonly marginMs: number,
    private readonly now: MonotonicClock = monotonicNow,
  ) {}

  /** The lease was granted in answer to a request sent at `requestedAt` (a `now()` reading). */
  granted(requestedAt: number): void {
    this.provenUntil = Math.max(this.provenUntil, requestedAt + this.ttlMs);
  }

  /** etcd answered the renewal sent at `sentAt` (a `now()` reading); `ttlS` is the TTL it granted. */
  renewed(sentAt: number, ttlS?: number): void {
    const ttlMs = ttlS !== undefined && ttlS > 0 ? ttlS * 1000 : this.ttlMs;
    this.provenUntil = Math.max(this.provenUntil, sentAt + ttlMs);
  }

  /** The lease is gone (resigned, revoked, lost): nothing is proven any more. */
  revoke(): void {
    this.provenUntil = -Infinity;
  }

  /** Leadership may be exercised now: the lease is proven for at least the margin more. */
  proven(): boolean {
    return this.now() < this.provenUntil - this.marginMs;
  }

  /** How long leadership stays proven without another answered renewal (0 when it is not). */
  remainingMs(): number {
    return Math.max(0, this.provenUntil - this.marginMs - this.now());
  }
}
