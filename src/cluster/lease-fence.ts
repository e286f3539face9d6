/**
 * Whether this node's etcd lease, and so its leadership, is proven now. Counted on the monotonic clock
 * (a wall-clock step must not extend it) from the *send* time of the keepalive that etcd answered:
 * etcd restarts the lease's TTL no earlier than when it receives a keepalive, so the lease lives at
 * least until that send time + TTL. Keepalives on one stream are answered in order, so each answer
 * belongs to the oldest keepalive still unanswered; when the stream breaks, unanswered ones prove
 * nothing. A leader stops acknowledging `marginMs` before the proven end (clock rates differ slightly).
 */
import { performance } from 'node:perf_hooks';

export type MonotonicClock = () => number;

export const monotonicNow: MonotonicClock = () => performance.now();

/** More unanswered keepalives than a live stream ever has (one a second, a stream times out at ttl). */
const MAX_UNANSWERED = 32;

export class LeaseFence {
  private provenUntil = -Infinity;
  private unanswered: number[] = [];

  constructor(
    private readonly ttlMs: number,
    private readonly marginMs: number,
    private readonly now: MonotonicClock = monotonicNow,
  ) {}

  /** The lease was granted in answer to a request sent at `requestedAt` (a `now()` reading). */
  granted(requestedAt: number): void {
    this.provenUntil = Math.max(this.provenUntil, requestedAt + this.ttlMs);
  }

  keepaliveSent(): void {
    // Never pair an answer with the wrong send: past the bound, forget them all (proves less, not more).
    if (this.unanswered.length >= MAX_UNANSWERED) this.unanswered = [];
    this.unanswered.push(this.now());
  }

  /** etcd answered the oldest unanswered keepalive; `ttlS` is the TTL it granted (default: ours). */
  keepaliveAnswered(ttlS?: number): void {
    const sentAt = this.unanswered.shift();
    if (sentAt === undefined) return;
    const ttlMs = ttlS !== undefined && ttlS > 0 ? ttlS * 1000 : this.ttlMs;
    this.provenUntil = Math.max(this.provenUntil, sentAt + ttlMs);
  }

  /** The keepalive stream failed or was replaced: what it had in flight will never be answered. */
  streamReset(): void {
    this.unanswered = [];
  }

  /** The lease is gone (resigned, revoked, lost): nothing is proven any more. */
  revoke(): void {
    this.provenUntil = -Infinity;
    this.unanswered = [];
  }

  /** Leadership may be exercised now: the lease is proven for at least the margin more. */
  proven(): boolean {
    return this.now() < this.provenUntil - this.marginMs;
  }

  /** How long leadership stays proven without another answered keepalive (0 when it is not). */
  remainingMs(): number {
    return Math.max(0, this.provenUntil - this.marginMs - this.now());
  }
}
