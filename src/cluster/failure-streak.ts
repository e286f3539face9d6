/**
 * A retried operation that keeps failing (etcd unreachable, a full disk) is logged when it starts to
 * fail and when it recovers, not once per try: a retry every 200 ms would bury every other line. Between
 * the two, a reminder at most every `remindMs`. The pause before the next try doubles from `firstMs` up
 * to `maxMs`, so that a long outage is not met with a busy loop either.
 */
export interface StreakLogger {
  log(message: string): void;
  warn(message: string): void;
}

export interface StreakOptions {
  firstMs?: number;
  maxMs?: number;
  remindMs?: number;
  /** A failure this long after the previous one starts a new streak (logged): the quiet meant success. */
  quietMs?: number;
  now?: () => number;
}

export class FailureStreak {
  private failures = 0;
  private since = 0;
  private lastLine = 0;
  private lastFailure = 0;
  private readonly quietMs: number;
  private readonly firstMs: number;
  private readonly maxMs: number;
  private readonly remindMs: number;
  private readonly now: () => number;

  constructor(
    private readonly logger: StreakLogger,
    /** What is being retried, e.g. "node registration". */
    private readonly what: string,
    options: StreakOptions = {},
  ) {
    this.firstMs = options.firstMs ?? 200;
    this.maxMs = options.maxMs ?? 5000;
    this.remindMs = options.remindMs ?? 60_000;
    this.now = options.now ?? (() => performance.now());
    this.quietMs = options.quietMs ?? 3 * this.maxMs;
  }

  get failing(): boolean {
    return this.failures > 0;
  }

  /** One more failure; logs the first of a streak (and a reminder now and then). Returns the next pause. */
  failed(why: string, retrying = 'retrying with back-off'): number {
    const t = this.now();
    // Some operations have no success event to wait for (a campaign that waits in etcd's queue).
    if (this.failures > 0 && t - this.lastFailure >= this.quietMs) this.failures = 0;
    this.lastFailure = t;
    if (this.failures === 0) {
      this.since = t;
      this.lastLine = t;
      this.logger.warn(`${this.what}: ${why}; ${retrying}`);
    } else if (t - this.lastLine >= this.remindMs) {
      this.lastLine = t;
      this.logger.warn(
        `${this.what}: still failing after ${this.failures + 1} tries in ${Math.round((t - this.since) / 1000)} s: ${why}`,
      );
    }
    const pause = Math.min(this.maxMs, this.firstMs * 2 ** Math.min(this.failures, 20));
    this.failures++;
    return pause;
  }

  /** Success: ends a streak with one line (nothing when there was none). */
  succeeded(detail = 'ok again'): void {
    if (this.failures === 0) return;
    const t = this.now();
    this.logger.log(
      `${this.what}: ${detail} after ${this.failures} failed ${this.failures === 1 ? 'try' : 'tries'} ` +
        `(${((t - this.since) / 1000).toFixed(1)} s)`,
    );
    this.failures = 0;
  }
}
