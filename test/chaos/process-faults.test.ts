/**
 * Process faults under 64 saves in flight (see support/chaos-cluster.ts): the master SIGKILLed, the
 * master paused past its lease, a replica paused out of the in-sync set and then the master killed, two
 * failovers in quick succession, a lagging replica restarted right after a failover. Each case checks the
 * whole history (nothing acknowledged lost, no id with two bodies, no skipped id, identical files).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { EtcdProcess } from '../support/etcd.js';
import { holdsFor, waitFor } from '../support/wait.js';
import { CASE_TIMEOUT_MS, assertClean, runScenario, waitAcks } from './support/chaos-cluster.js';

const CASE = { timeout: CASE_TIMEOUT_MS };

describe('chaos: process faults', () => {
  let etcd: EtcdProcess;
  before(async () => {
    etcd = await EtcdProcess.start();
  });
  after(async () => {
    await etcd?.stop();
  });

  it('the master SIGKILLed: another node takes over', CASE, async () => {
    const { report, logs } = await runScenario(etcd, 'master SIGKILL', {}, async ({ cluster }) => {
      const m = await cluster.waitMaster();
      await cluster.kill(m);
      await cluster.waitNewMaster(m);
    });
    assertClean(report, logs);
  });

  it(
    'the master SIGSTOPped past its lease, then SIGCONT: it acknowledges nothing and follows',
    CASE,
    async () => {
      const { report, logs } = await runScenario(
        etcd,
        'master SIGSTOP past its lease',
        {},
        async ({ cluster }) => {
          const m = await cluster.waitMaster();
          cluster.pause(m);
          await cluster.waitNewMaster(m);
          cluster.resume(m);
          await waitFor(async () => (await cluster.summary(m))?.role === 'follower', {
            what: `the old master ${m} following`,
            timeoutMs: 30000,
            intervalMs: 100,
          });
        },
      );
      assertClean(report, logs);
    },
  );

  it(
    'a replica SIGSTOPped out of the in-sync set, then the master SIGKILLed: the stopped replica is not elected',
    CASE,
    async () => {
      const elected: { stopped: string; next: string }[] = [];
      const { report, logs } = await runScenario(
        etcd,
        'replica SIGSTOP out of the in-sync set, then master SIGKILL',
        {},
        async ({ cluster, workload }) => {
          const m = await cluster.waitMaster();
          await cluster.waitInSync((s) => s.length === 3, 'all three nodes in sync');
          // The replica next in the election queue: the one that would win when the master goes.
          const queue = await cluster.electionQueue();
          const r = queue.find((n) => n !== m) ?? cluster.names.find((n) => n !== m)!;
          const other = cluster.names.find((n) => n !== m && n !== r)!;
          cluster.note(`election queue ${queue.join(',')}`);
          cluster.pause(r);
          // Short enough that its etcd lease (3 s) survives: it stays in the election queue.
          await cluster.waitInSync(
            (s) => !s.includes(r) && s.includes(other),
            `${r} recorded out of the in-sync set`,
          );
          await waitAcks(workload, 50, 'saves acknowledged without the stopped replica');
          await cluster.kill(m);
          cluster.resume(r);
          elected.push({ stopped: r, next: await cluster.waitNewMaster(m) });
        },
      );
      const wrong = elected
        .filter((e) => e.next === e.stopped)
        .map((e) => `the stopped replica ${e.stopped} was elected`);
      assertClean(report, `${wrong.join('\n')}\n${logs}`);
      assert.deepEqual(wrong, []);
    },
  );

  it('two failovers in quick succession: the successor killed as soon as it is elected', CASE, async () => {
    const { report, logs } = await runScenario(
      etcd,
      'two failovers in quick succession',
      {},
      async ({ cluster }) => {
        const m1 = await cluster.waitMaster();
        await cluster.kill(m1);
        const m2 = await cluster.waitNewMaster(m1);
        await cluster.kill(m2);
        const inSync = await cluster.inSync();
        await cluster.startNode(m1);
        if (inSync.some((n) => n !== m2 && cluster.running(n))) {
          await cluster.waitNewMaster(m2, 60000);
        } else {
          // The successor died before any replica joined its in-sync set: it alone holds every
          // acknowledged save, so no other node may lead until it is back.
          cluster.note(`only ${m2} is recorded in sync (${inSync.join(',')}): the shard waits for it`);
          await holdsFor(async () => (await cluster.master()) === null, {
            what: `no master while ${m2}, the only in-sync node, is down`,
            periodMs: 5000,
            intervalMs: 200,
          });
          await cluster.startNode(m2);
          await cluster.waitMaster(`${m2} back as master`, 60000);
        }
      },
    );
    assertClean(report, logs);
  });

  it('a lagging replica restarted right after a failover', CASE, async () => {
    const { report, logs } = await runScenario(
      etcd,
      'lagging replica restarted right after a failover',
      {},
      async ({ cluster, workload }) => {
        const m = await cluster.waitMaster();
        const [r] = cluster.names.filter((n) => n !== m);
        // Its link to the master slowed to a trickle: it falls behind and leaves the in-sync set.
        cluster.sync.get(`${r}>${m}`)!.bytesPerSecond = 2_000;
        cluster.note(`link ${r}>${m} throttled to 2 kB/s`);
        await cluster.waitInSync((s) => !s.includes(r), `${r} recorded out of the in-sync set`);
        await waitAcks(workload, 200, 'saves acknowledged while the replica lags');
        await cluster.kill(m);
        await cluster.waitNewMaster(m);
        await cluster.restart(r);
      },
    );
    assertClean(report, logs);
  });

  it('the master SIGKILLed with two CPU-burning processes loading the machine', CASE, async () => {
    const { report, logs } = await runScenario(
      etcd,
      'master SIGKILL, CPU busy',
      { busy: true },
      async ({ cluster }) => {
        const m = await cluster.waitMaster();
        await cluster.kill(m);
        await cluster.waitNewMaster(m);
      },
    );
    assertClean(report, logs);
  });
});
