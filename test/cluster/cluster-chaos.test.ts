/**
 * Chaos on one shard of three nodes, min_insync_replicas=1, 64 saves in flight through ImsClusterClient:
 * whichever node is master is SIGKILLed every few seconds and restarted. Every acknowledged save must be
 * on every node afterwards, and the three nodes' block files must end byte-identical. The soak variant
 * (more kills) runs with IMS_CHAOS_KILLS=N.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ImsClusterClient } from '../../src/client/index.js';
import { Cmd } from '../../src/format/constants.js';
import { MessageStore } from '../../src/storage/index.js';
import { EtcdProcess } from '../support/etcd.js';
import { removeDir } from '../support/fixtures.js';
import { imBody } from '../support/rpc-client.js';
import { MAIN_JS, startServer, type ServerProcess } from '../support/server-process.js';
import { waitFor } from '../support/wait.js';
import { blockDifference, httpJson } from '../replication/support.js';

const KILLS = Number(process.env.IMS_CHAOS_KILLS ?? 4);

describe('cluster chaos: the master SIGKILLed again and again', () => {
  let etcd: EtcdProcess;
  const procs: ServerProcess[] = [];
  let client: ImsClusterClient | null = null;
  before(async () => {
    etcd = await EtcdProcess.start();
  });
  after(async () => {
    await client?.close().catch(() => undefined);
    for (const s of procs) await s.kill9().catch(() => undefined);
    for (const s of procs) removeDir(path.dirname(s.configPath));
    const dirs = new Set(procs.map((p) => p.dataDir));
    for (const d of dirs) removeDir(path.dirname(d));
    await etcd?.stop();
  });

  it(
    `${KILLS} kills of the master under 64 saves in flight: nothing acknowledged is lost, the nodes end identical`,
    { timeout: 240_000 },
    async () => {
      const init = spawnSync(
        process.execPath,
        [MAIN_JS, 'cluster', 'init', '--etcd', etcd.endpoint, '--cluster', 'chaos', '--shards', '1'],
        { encoding: 'utf8' },
      );
      assert.equal(init.status, 0, init.stderr);
      const config = (name: string) => ({
        etcd_endpoints: etcd.endpoint,
        cluster_name: 'chaos',
        shard: 0,
        node_name: name,
        min_insync_replicas: 1,
        replica_lag_timeout_ms: 2000,
      });
      const names = ['c1', 'c2', 'c3'];
      const nodes = new Map<string, ServerProcess>();
      for (const n of names) {
        const s = await startServer({ config: config(n) });
        procs.push(s);
        nodes.set(n, s);
      }
      const roleOf = async (s: ServerProcess) =>
        ((await httpJson(`${s.httpBase}/summary`).catch(() => null)) as { cluster?: { role: string } } | null)
          ?.cluster?.role;
      const masterName = async () => {
        for (const [n, s] of nodes) if (!s.exited && (await roleOf(s)) === 'master') return n;
        return null;
      };
      await waitFor(masterName, { what: 'a first master', timeoutMs: 20000, intervalMs: 100 });

      client = new ImsClusterClient({
        etcd: [etcd.endpoint],
        cluster: 'chaos',
        timeoutMs: 5000,
        failoverTimeoutMs: 20000,
      });
      await client.connect();
      const acked = new Map<number, string>();
      let lastAckAt = Date.now();
      let longestGapMs = 0;
      let failures = 0;
      let stop = false;
      const writer = async (w: number) => {
        for (let i = 0; !stop; i++) {
          const text = `w${w}#${i}`;
          try {
            const r = await client!.savePeerMessage({
              appId: 1,
              uid: 7000 + w,
              deviceId: 1,
              cmd: Cmd.IM,
              raw: imBody(1, 7000 + w, text),
            });
            const now = Date.now();
            longestGapMs = Math.max(longestGapMs, now - lastAckAt);
            lastAckAt = now;
            acked.set(r.msgId, text);
          } catch {
            // Not acknowledged (ambiguous or refused): nothing is claimed about it.
            failures++;
            await new Promise((r) => setTimeout(r, 20));
          }
        }
      };
      const writers = Array.from({ length: 64 }, (_, w) => writer(w));
      for (let k = 0; k < KILLS; k++) {
        await waitFor(() => acked.size > 0 && Date.now() - lastAckAt < 200, {
          what: 'saves being acknowledged',
          timeoutMs: 30000,
        });
        await new Promise((r) => setTimeout(r, 1500));
        const m = await waitFor(masterName, { what: 'a master to kill', timeoutMs: 20000, intervalMs: 100 });
        const victim = nodes.get(m)!;
        await victim.kill9();
        await waitFor(async () => (await masterName()) !== null, {
          what: 'a new master',
          timeoutMs: 20000,
          intervalMs: 100,
        });
        const again = await startServer({ dataDir: victim.dataDir, config: config(m) });
        procs.push(again);
        nodes.set(m, again);
      }
      await waitFor(() => Date.now() - lastAckAt < 200, {
        what: 'saves acknowledged after the last kill',
        timeoutMs: 30000,
      });
      stop = true;
      await Promise.all(writers);
      console.log(
        `chaos: ${KILLS} kills, ${acked.size} acknowledged saves, ${failures} unacknowledged attempts, ` +
          `longest stretch without an acknowledged save ${longestGapMs} ms (lease ttl 3 s)`,
      );
      const [first, ...rest] = [...nodes.values()];
      for (const s of rest) {
        let diff: string | null = '';
        await waitFor(() => (diff = blockDifference(first.dataDir, s.dataDir)) === null, {
          what: () => `identical block files (${diff})`,
          timeoutMs: 30000,
          intervalMs: 200,
        });
      }
      for (const s of nodes.values()) await s.stop();
      for (const s of nodes.values()) {
        const store = MessageStore.open({ root: s.dataDir });
        try {
          for (const [id, text] of acked) {
            assert.ok(
              store.files.read(id).body.includes(Buffer.from(text)),
              `save ${id} (${text}) on ${s.dataDir}`,
            );
          }
        } finally {
          await store.close();
        }
      }
      assert.ok(longestGapMs < 15000, `longest stretch without an acknowledged save: ${longestGapMs} ms`);
    },
  );
});
