/**
 * etcd faults under 64 saves in flight: etcd stopped and restarted, and etcd slowed (every node's etcd
 * link delayed 1.5 s per chunk). A master that cannot prove its lease acknowledges nothing; reads go on;
 * writes resume on their own. Each case checks the whole history.
 */
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { EtcdProcess } from '../support/etcd.js';
import { LEASE_TTL_S } from '../../src/cluster/cluster.service.js';
import { CASE_TIMEOUT_MS, assertClean, runScenario } from './support/chaos-cluster.js';

const CASE = { timeout: CASE_TIMEOUT_MS };
/**
 * Saves answered this long after the lease ran out may have been decided just before it (transit, and
 * this test process's own event loop on a loaded machine).
 */
const SLACK_MS = 1000;

describe('chaos: etcd faults', () => {
  let etcd: EtcdProcess;
  before(async () => {
    etcd = await EtcdProcess.start();
  });
  after(async () => {
    await etcd?.stop();
  });

  it(
    'etcd stopped and restarted: no acknowledgement past the lease, reads go on, writes resume',
    CASE,
    async () => {
      const problems: string[] = [];
      const { report, logs } = await runScenario(
        etcd,
        'etcd stopped and restarted',
        {},
        async ({ cluster, workload }) => {
          await cluster.waitMaster();
          const haltedAt = performance.now();
          await etcd.halt();
          cluster.note('etcd stopped');
          // The duration is the fault: well past the lease.
          await sleep(6000);
          const now = performance.now();
          const fencedFrom = haltedAt + LEASE_TTL_S * 1000 + SLACK_MS;
          const acked = workload.ackedBetween(fencedFrom, now);
          if (acked > 0)
            problems.push(`${acked} saves acknowledged after the lease could no longer be renewed`);
          const reads = workload.readsBetween(fencedFrom, now);
          if (reads === 0) problems.push('no read answered while etcd was down');
          await etcd.resume();
          cluster.note('etcd restarted');
        },
      );
      assertClean(report, `${problems.join('\n')}\n${logs}`);
      assert.deepEqual(problems, []);
    },
  );

  it(
    "etcd slowed (1.5 s per chunk on every node's link): nothing acknowledged without a proven lease, reads go on, writes resume",
    CASE,
    async () => {
      const problems: string[] = [];
      const { report, logs } = await runScenario(
        etcd,
        'etcd slowed (1.5 s delay)',
        {},
        async ({ cluster, workload }) => {
          await cluster.waitMaster();
          const slowedAt = performance.now();
          for (const link of cluster.etcdLink.values()) link.delayMs = 1500;
          cluster.note('every etcd link delayed 1.5 s per chunk');
          await sleep(8000);
          const now = performance.now();
          // A renewal now takes 3 s to be answered: a lease counted from its send time is never proven.
          const fencedFrom = slowedAt + LEASE_TTL_S * 1000 + SLACK_MS;
          const acked = workload.ackedBetween(fencedFrom, now);
          if (acked > 0) problems.push(`${acked} saves acknowledged while no renewal could prove the lease`);
          if (workload.readsBetween(fencedFrom, now) === 0)
            problems.push('no read answered while etcd was slow');
        },
      );
      assertClean(report, `${problems.join('\n')}\n${logs}`);
      assert.deepEqual(problems, []);
    },
  );
});
