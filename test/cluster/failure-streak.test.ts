/**
 * FailureStreak on a fake clock: a streak of failures is said once (plus a reminder per interval) and
 * its end once; the pause between tries doubles up to a cap; a long quiet starts a new streak.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FailureStreak } from '../../src/cluster/failure-streak.js';

function setup(options: { remindMs?: number; quietMs?: number } = {}) {
  let now = 0;
  const lines: string[] = [];
  const logger = { log: (m: string) => lines.push(`LOG ${m}`), warn: (m: string) => lines.push(`WARN ${m}`) };
  const streak = new FailureStreak(logger, 'etcd', { firstMs: 200, maxMs: 5000, now: () => now, ...options });
  return { streak, lines, advance: (ms: number) => (now += ms) };
}

describe('FailureStreak', () => {
  it('says the first failure, counts the rest, and says the recovery once', () => {
    const { streak, lines, advance } = setup();
    const pauses: number[] = [];
    for (let i = 0; i < 8; i++) {
      pauses.push(streak.failed('connection refused'));
      advance(pauses[i]);
    }
    assert.deepEqual(pauses, [200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
    assert.deepEqual(lines, ['WARN etcd: connection refused; retrying with back-off']);
    streak.succeeded('registered again');
    streak.succeeded('registered again');
    assert.equal(lines.length, 2);
    assert.match(lines[1], /^LOG etcd: registered again after 8 failed tries \(21\.2 s\)$/);
    // A new streak starts from the first pause again.
    assert.equal(streak.failed('connection refused'), 200);
    assert.equal(lines.length, 3);
  });

  it('reminds at most once per interval during a long streak', () => {
    const { streak, lines, advance } = setup({ remindMs: 10_000, quietMs: 60_000 });
    for (let i = 0; i < 20; i++) advance(streak.failed('down'));
    const reminders = lines.filter((l) => /still failing/.test(l));
    // 20 tries over about 80 s of pauses: one first line and a reminder per 10 s at most.
    assert.ok(reminders.length >= 6 && reminders.length <= 8, lines.join('\n'));
    assert.match(reminders[0], /^WARN etcd: still failing after \d+ tries in \d+ s: down$/);
  });

  it('a failure after a long quiet is a new streak (some operations have no success event)', () => {
    const { streak, lines, advance } = setup({ quietMs: 15_000 });
    streak.failed('campaign ended');
    advance(200);
    streak.failed('campaign ended');
    assert.equal(lines.length, 1);
    advance(20_000);
    assert.equal(streak.failed('campaign ended'), 200);
    assert.equal(lines.length, 2);
  });
});
