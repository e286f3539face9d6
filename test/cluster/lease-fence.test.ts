/**
 * Fencing, pinned with a fake monotonic clock: leadership is proven from the send time of the keepalive
 * etcd actually answered, never from a later send, and never from the wall clock.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LeaseFence } from '../../src/cluster/lease-fence.js';

const TTL = 3000;
const MARGIN = 700;

function fenceAt() {
  const clock = { now: 0 };
  const fence = new LeaseFence(TTL, MARGIN, () => clock.now);
  return { clock, fence };
}

describe('lease fence', () => {
  it('a granted lease is proven from the request time + ttl - margin, and no longer', () => {
    const { clock, fence } = fenceAt();
    assert.equal(fence.proven(), false, 'nothing proven before a grant');
    clock.now = 100;
    fence.granted(100);
    clock.now = 100 + TTL - MARGIN - 1;
    assert.equal(fence.proven(), true);
    clock.now = 100 + TTL - MARGIN;
    assert.equal(fence.proven(), false);
  });

  it('a pause between a keepalive and its answer proves only from that keepalive, not the next one sent', () => {
    const { clock, fence } = fenceAt();
    fence.granted(0);
    clock.now = 1000;
    fence.keepaliveSent(); // sent at 1000 …
    clock.now = 2000;
    fence.keepaliveSent(); // … and at 2000 while the first is unanswered (a stall in between)
    clock.now = 2600;
    fence.keepaliveAnswered(); // the answer belongs to the keepalive sent at 1000
    assert.equal(fence.remainingMs(), 1000 + TTL - MARGIN - 2600);
    clock.now = 1000 + TTL - MARGIN;
    assert.equal(fence.proven(), false, 'not proven past the answered send + ttl - margin');
    fence.keepaliveAnswered(); // now the one sent at 2000
    assert.equal(fence.proven(), true);
    clock.now = 2000 + TTL - MARGIN;
    assert.equal(fence.proven(), false);
  });

  it('keepalives of a broken stream prove nothing when an answer arrives on the next one', () => {
    const { clock, fence } = fenceAt();
    fence.granted(0);
    clock.now = 1000;
    fence.keepaliveSent();
    fence.streamReset();
    clock.now = 2500;
    fence.keepaliveAnswered(); // an answer with nothing outstanding: proves nothing
    clock.now = TTL - MARGIN;
    assert.equal(fence.proven(), false);
  });

  it('the ttl etcd granted is used when it says one', () => {
    const { clock, fence } = fenceAt();
    fence.keepaliveSent();
    fence.keepaliveAnswered(5);
    clock.now = 5000 - MARGIN - 1;
    assert.equal(fence.proven(), true);
    clock.now = 5000 - MARGIN;
    assert.equal(fence.proven(), false);
  });

  it('revoke ends the proof at once', () => {
    const { fence } = fenceAt();
    fence.granted(0);
    assert.equal(fence.proven(), true);
    fence.revoke();
    assert.equal(fence.proven(), false);
    assert.equal(fence.remainingMs(), 0);
  });

  it('a wall-clock step does not move the proof (the fence reads only its monotonic clock)', () => {
    const { clock, fence } = fenceAt();
    fence.granted(0);
    clock.now = 2000;
    const realNow = Date.now;
    try {
      Date.now = () => realNow() - 3_600_000; // an hour back
      assert.equal(fence.remainingMs(), TTL - MARGIN - 2000);
      Date.now = () => realNow() + 3_600_000; // an hour forward
      assert.equal(fence.remainingMs(), TTL - MARGIN - 2000);
    } finally {
      Date.now = realNow;
    }
  });
});
