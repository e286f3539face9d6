/**
 * The master's wall clock stepped by ±1 hour (libfaketime; the monotonic clock runs on, as when NTP
 * steps the clock): nothing changes — no failover, saves go on, the history is clean. Then, with its
 * clock an hour back, the master paused past its lease: it must not believe it still leads.
 */
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { after, before, describe, it } from 'node:test';
import { EtcdProcess } from '../support/etcd.js';
import { holdsFor, waitFor } from '../support/wait.js';
import { CASE_TIMEOUT_MS, assertClean, runScenario, waitAcks } from './support/chaos-cluster.js';

const CASE = { timeout: CASE_TIMEOUT_MS };

describe('chaos: wall-clock jumps', () => {
  let etcd: EtcdProcess;
  before(async () => {
    etcd = await EtcdProcess.start();
  });
  after(async () => {
    await etcd?.stop();
  });

  for (const step of ['+1h', '-1h']) {
    it(`the master's wall clock stepped ${step}: no failover, saves go on`, CASE, async () => {
      const problems: string[] = [];
      const { report, logs } = await runScenario(
        etcd,
        `wall clock ${step} on the master`,
        { fakeClock: true },
        async ({ cluster, workload }) => {
          const m = await cluster.waitMaster();
          const epoch = (await cluster.summary(m))!.epoch;
          const at = performance.now();
          cluster.setClock(m, step);
          cluster.note(`${m}'s wall clock stepped ${step}`);
          // What must not change, watched over a period longer than the lease.
          await holdsFor(
            async () => {
              const s = await cluster.summary(m);
              return s === null || (s.role === 'master' && s.epoch === epoch);
            },
            { what: `${m} leading epoch ${epoch}`, periodMs: 5000, intervalMs: 200 },
          ).catch((err: Error) => problems.push(err.message));
          const gap = workload.longestGapBetween(at, performance.now());
          if (gap >= 3000) problems.push(`no save acknowledged for ${gap} ms after the clock step`);
          cluster.setClock(m, '+0');
          await waitAcks(workload, 100, 'saves acknowledged with the clock set right again');
        },
      );
      assertClean(report, `${problems.join('\n')}\n${logs}`);
      assert.deepEqual(problems, []);
    });
  }

  it(
    'the master, its clock an hour back, paused past its lease: after SIGCONT it acknowledges nothing',
    CASE,
    async () => {
      const { report, logs } = await runScenario(
        etcd,
        'wall clock -1h on the master, then paused past its lease',
        { fakeClock: true },
        async ({ cluster }) => {
          const m = await cluster.waitMaster();
          cluster.setClock(m, '-1h');
          await waitFor(async () => (await cluster.summary(m))?.role === 'master', { what: `${m} leading` });
          cluster.pause(m);
          await cluster.waitNewMaster(m);
          cluster.resume(m);
          await waitFor(async () => (await cluster.summary(m))?.role === 'follower', {
            what: `the old master ${m} following`,
            timeoutMs: 30000,
            intervalMs: 100,
          });
          cluster.setClock(m, '+0');
        },
      );
      assertClean(report, logs);
    },
  );
});
