/**
 * The leadership rules against an in-memory registry, each interleaving pinned (no processes, no
 * waiting for races): only a member of the recorded in-sync set takes a shard over, checked in the same
 * transaction that writes the new epoch; a deposed node writes nothing.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { InSyncRecord } from '../../src/cluster/cluster-keys.js';
import { Leadership } from '../../src/cluster/leadership.js';
import type { InSyncReading, ShardRegistry } from '../../src/cluster/shard-registry.js';

/** etcd's behaviour for the keys the rules touch: revisions, campaign keys, guarded transactions. */
class MemoryRegistry implements ShardRegistry {
  revision = 1;
  isr: { record: InSyncRecord; rev: number } | null = null;
  epoch = 0;
  readonly campaignKeys = new Set<string>();
  /** Runs between a reader's read and its claim (the interleaving under test). */
  beforeClaim: (() => void) | null = null;
  writes = 0;

  setInSync(record: InSyncRecord): void {
    this.isr = { record, rev: ++this.revision };
  }

  readInSync(): Promise<InSyncReading> {
    return Promise.resolve(
      this.isr
        ? { record: this.isr.record, revision: String(this.isr.rev) }
        : { record: null, revision: '0' },
    );
  }

  readEpoch(): Promise<number> {
    return Promise.resolve(this.epoch);
  }

  claim(campaignKey: string, seen: string, epoch: number, self: string): Promise<boolean> {
    const hook = this.beforeClaim;
    this.beforeClaim = null;
    hook?.();
    if (!this.campaignKeys.has(campaignKey)) return Promise.resolve(false);
    if (String(this.isr?.rev ?? 0) !== seen) return Promise.resolve(false);
    this.epoch = epoch;
    this.setInSync({ epoch, members: [self] });
    this.writes++;
    return Promise.resolve(true);
  }

  recordInSync(campaignKey: string, record: InSyncRecord): Promise<boolean> {
    if (!this.campaignKeys.has(campaignKey)) return Promise.resolve(false);
    this.setInSync(record);
    this.writes++;
    return Promise.resolve(true);
  }
}

describe('leadership rules', () => {
  it('a new shard (no set recorded): the elected node leads epoch 1 and records itself alone', async () => {
    const reg = new MemoryRegistry();
    reg.campaignKeys.add('k-a');
    const r = await new Leadership(reg, 'a', 1).takeOver('k-a', 0);
    assert.deepEqual(r, { kind: 'lead', epoch: 1 });
    assert.deepEqual(reg.isr?.record, { epoch: 1, members: ['a'] });
  });

  it('a replica that left the in-sync set is refused when elected, and writes nothing (the lost-saves case)', async () => {
    // b was paused, the master a recorded {a, c} and kept acknowledging, then a was killed: b is elected.
    const reg = new MemoryRegistry();
    reg.epoch = 4;
    reg.setInSync({ epoch: 4, members: ['a', 'c'] });
    reg.campaignKeys.add('k-b');
    const before = reg.writes;
    const b = new Leadership(reg, 'b', 1);
    assert.equal(await b.mayCampaign(), false, 'b may not even queue');
    assert.deepEqual(await b.takeOver('k-b', 4), { kind: 'ineligible', inSync: ['a', 'c'] });
    assert.equal(reg.writes, before);
    assert.equal(reg.epoch, 4);
    // c, a member, takes over.
    reg.campaignKeys.delete('k-b');
    reg.campaignKeys.add('k-c');
    assert.deepEqual(await new Leadership(reg, 'c', 1).takeOver('k-c', 4), { kind: 'lead', epoch: 5 });
    assert.deepEqual(reg.isr?.record.members, ['c']);
  });

  it('a set shrunk between the read and the claim is seen: the claim fails on the revision and is re-read', async () => {
    const reg = new MemoryRegistry();
    reg.setInSync({ epoch: 2, members: ['a', 'b'] });
    reg.epoch = 2;
    reg.campaignKeys.add('k-b');
    reg.beforeClaim = () => reg.setInSync({ epoch: 2, members: ['a'] });
    const r = await new Leadership(reg, 'b', 1).takeOver('k-b', 2);
    assert.deepEqual(r, { kind: 'ineligible', inSync: ['a'] });
    assert.equal(reg.epoch, 2, 'no epoch was claimed');
  });

  it('a node whose campaign key is gone (deposed while taking over) writes nothing', async () => {
    const reg = new MemoryRegistry();
    reg.setInSync({ epoch: 1, members: ['a', 'b'] });
    reg.campaignKeys.add('k-a');
    reg.beforeClaim = () => reg.campaignKeys.delete('k-a');
    const writes = reg.writes;
    assert.deepEqual(await new Leadership(reg, 'a', 1).takeOver('k-a', 1), { kind: 'deposed' });
    assert.equal(reg.writes, writes);
    assert.equal(await new Leadership(reg, 'a', 1).recorder('k-a')({ epoch: 1, members: ['a'] }), false);
  });

  it('the new epoch is past the recorded epoch, the set’s epoch and every epoch the node has seen', async () => {
    const reg = new MemoryRegistry();
    reg.epoch = 3;
    reg.setInSync({ epoch: 5, members: ['a'] });
    reg.campaignKeys.add('k-a');
    assert.deepEqual(await new Leadership(reg, 'a', 1).takeOver('k-a', 7), { kind: 'lead', epoch: 8 });
  });

  it('min_insync_replicas=0 gives the promise up: any node may lead', async () => {
    const reg = new MemoryRegistry();
    reg.setInSync({ epoch: 1, members: ['a'] });
    reg.campaignKeys.add('k-z');
    const z = new Leadership(reg, 'z', 0);
    assert.equal(await z.mayCampaign(), true);
    assert.deepEqual(await z.takeOver('k-z', 1), { kind: 'lead', epoch: 2 });
  });
});
