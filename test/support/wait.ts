/**
 * Waiting in tests: on a condition, never for a fixed time that is hoped to be long enough. A loaded
 * machine makes every fixed sleep too short some day; a condition waits as long as it must and no longer.
 */
import { setTimeout as sleep } from 'node:timers/promises';

export interface WaitOptions {
  /** What is waited for, named in the error on timeout (a function to describe the state at that moment). */
  what: string | (() => string);
  /** Give up after this long (default 15 s). */
  timeoutMs?: number;
  /** Poll this often (default 20 ms). */
  intervalMs?: number;
}

const describeWhat = (what: WaitOptions['what']) => (typeof what === 'string' ? what : what());

const describeLast = (last: unknown) =>
  last instanceof Error ? last.message : typeof last === 'string' ? last : JSON.stringify(last);

/**
 * Polls `condition` until it returns a truthy value, and returns that value. A condition that throws
 * counts as "not yet" (a connection refused while a server starts). On timeout it throws an error that
 * names what it waited for and the last value or error the condition gave.
 */
export async function waitFor<T>(
  condition: () => T | Promise<T>,
  { what, timeoutMs = 15_000, intervalMs = 20 }: WaitOptions,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await condition();
      if (value) return value as NonNullable<T>;
      last = value;
    } catch (err) {
      last = err;
    }
    if (Date.now() >= deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${describeWhat(what)} (last: ${describeLast(last)})`,
      );
    }
    await sleep(intervalMs);
  }
}

export interface HoldOptions {
  /** What must stay true, named in the error when it stops. */
  what: string | (() => string);
  /** How long it must hold: the period the test asserts over. */
  periodMs: number;
  /** Check this often (default 20 ms). */
  intervalMs?: number;
}

/**
 * Asserts that `condition` stays true for a whole period; throws at the first check where it is not.
 * This is for what a test can only assert over time ("nothing more is sent"): absence has no event to
 * wait on, so a period is the assertion itself. The period says how long "nothing" was watched for.
 */
export async function holdsFor(
  condition: () => boolean | Promise<boolean>,
  { what, periodMs, intervalMs = 20 }: HoldOptions,
): Promise<void> {
  const start = Date.now();
  for (;;) {
    if (!(await condition()))
      throw new Error(`${describeWhat(what)} stopped holding after ${Date.now() - start} ms`);
    if (Date.now() - start >= periodMs) return;
    await sleep(Math.min(intervalMs, periodMs));
  }
}
