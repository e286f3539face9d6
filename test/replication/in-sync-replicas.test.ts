/**
 * The in-sync set's rules without processes: a master's term starts its acknowledged end at its log
 * end, so a replica that holds less never joins (KAFKA-7128); the high watermark readers get moves only
 * with what every member holds, never backwards.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InSyncReplicas } from '../../src/replication/in-sync-replicas.js';
import { silentLogger } from '../../src/storage/storage-logger.js';

function replicasWith(minInsync: number, logEnd: { value: number }, recorded: string[][]) {
  const r = new InSyncReplicas(
    { minInsync, lagTimeoutMs: 60_000, sendableEnd: () => logEnd.value },
    silentLogger,
  );
  void r.setMembership({
    record: (names) => {
      recorded.push(names);
      return Promise.resolve();
    },
  });
  return r;
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('in-sync replicas', () => {
  it('a replica far behind a new master is not recorded in sync until it holds the log end of the term start', async () => {
    const logEnd = { value: 10_000 };
    const recorded: string[][] = [];
    const isr = replicasWith(1, logEnd, recorded);
    isr.beginTerm(logEnd.value);
    const b = {};
    isr.addReplica(b, 'b', 0);
    // New saves arrive; b acknowledges promptly but is still far behind what the old master acknowledged.
    logEnd.value = 10_500;
    isr.noteWrite(10_500);
    isr.ack(b, 4_000);
    await settle();
    assert.equal(isr.state(b)!.inSync, false, 'a lagging replica stays out');
    assert.equal(isr.inSyncCount, 0);
    assert.throws(() => isr.admit(), /not enough in-sync replicas \(0 of 1 required\)/);
    isr.ack(b, 9_999);
    await settle();
    assert.equal(isr.state(b)!.inSync, false, 'one byte short of the term start');
    isr.ack(b, 10_000);
    await settle();
    assert.equal(isr.state(b)!.inSync, true, 'holds the term start: joins');
    assert.deepEqual(recorded.at(-1), ['b']);
    isr.stop();
  });

  it('the high watermark is the least any member holds (and the local end), and never goes back', async () => {
    const logEnd = { value: 1000 };
    const isr = replicasWith(1, logEnd, []);
    isr.beginTerm(1000);
    assert.equal(isr.highWatermark(1000), 1000, 'the term start is acknowledged from the start');
    const b = {};
    const c = {};
    isr.addReplica(b, 'b', 1000);
    isr.addReplica(c, 'c', 1000);
    await settle();
    logEnd.value = 2000;
    isr.noteWrite(2000);
    isr.ack(b, 2000);
    assert.equal(isr.highWatermark(2000), 1000, 'c has not acknowledged 2000');
    isr.ack(c, 1500);
    assert.equal(isr.highWatermark(2000), 1500);
    assert.equal(isr.highWatermark(1200), 1200, 'never past the local (durable) end');
    isr.ack(c, 2000);
    assert.equal(isr.highWatermark(2000), 2000);
    isr.removeReplica(c);
    isr.removeReplica(b);
    await settle();
    assert.equal(isr.highWatermark(2000), 2000, 'never backwards');
    isr.stop();
  });

  it('a new term forgets the replicas of the last one', () => {
    const logEnd = { value: 500 };
    const isr = replicasWith(1, logEnd, []);
    isr.beginTerm(500);
    const b = {};
    isr.addReplica(b, 'b', 500);
    assert.equal(isr.inSyncCount, 1);
    isr.beginTerm(800);
    assert.equal(isr.inSyncCount, 0);
    assert.equal(isr.state(b), null);
    isr.stop();
  });
});
