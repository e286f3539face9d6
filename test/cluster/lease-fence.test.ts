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

  it('an answer proves only from the send time of its own renewal, however late it arrives', () => {
    const { clock, fence } = fenceAt();
    fence.granted(0);
    clock.now = 1000;
    const first = clock.now; // sent at 1000 …
    clock.now = 2000; // … a stall …
    clock.now = 2600;
    fence.renewed(first); // … answered at 2600: proven from 1000, not from 2600
    assert.equal(fence.remainingMs(), 1000 + TTL - MARGIN - 2600);
    clock.now = 1000 + TTL - MARGIN;
    assert.equal(fence.proven(), false, 'not proven past the answered send + ttl - margin');
  });

  it('a late answer to an old renewal never extends the proof past its own send time', () => {
    const { clock, fence } = fenceAt();
    fence.granted(0);
    clock.now = 2000;
    fence.renewed(2000);
    clock.now = 2500;
    fence.renewed(500); // an answer to a renewal sent at 500 arriving now
    assert.equal(fence.remainingMs(), 2000 + TTL - MARGIN - 2500, 'the newer proof stands');
    clock.now = 2000 + TTL - MARGIN;
    assert.equal(fence.proven(), false);
  });

  it('with every answer 3 s late (a 1.5 s delay each way), the lease is never proven', () => {
    const { clock, fence } = fenceAt();
    fence.granted(0);
    for (let sent = 1000; sent <= 10_000; sent += 1000) {
      clock.now = sent + 3000;
      fence.renewed(sent);
      assert.equal(fence.proven(), false, `answer at ${clock.now} to the renewal sent at ${sent}`);
    }
  });

  it('the ttl etcd granted is used when it says one', () => {
    const { clock, fence } = fenceAt();
    fence.renewed(0, 5);
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
