/**
 * The errors an application sees from a cluster, with real processes and a real etcd: refusals are
 * typed by their stable sentence (not written / may be stored), carry no `internal error:` prefix and
 * leave no stack in the log; ImsClusterClient retries only the not-written kind and goes back to a
 * master that was paused for less than its lease once it proves the lease again.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { ImsClient, ImsClusterClient, ImsRpcError, refusalKind } from '../../src/client/index.js';
import { Cmd } from '../../src/format/constants.js';
import { refusalText } from '../../src/format/refusals.js';
import { EtcdProcess } from '../support/etcd.js';
import { imBody } from '../support/rpc-client.js';
import {
  MAIN_JS,
  startServer,
  killAll,
  type ServerOptions,
  type ServerProcess,
} from '../support/server-process.js';
import { waitFor } from '../support/wait.js';
import { httpJson } from '../replication/support.js';

interface Summary {
  storage: { next_message_id: number };
  cluster: {
    role: string;
    epoch: number;
    master: { node: string } | null;
    leaseProvenForMs: number | null;
  } | null;
  replication: { master: { inSyncReplicas: number } };
}

function cli(args: string[]) {
  const r = spawnSync(process.execPath, [MAIN_JS, 'cluster', ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('cluster errors a client can act on', () => {
  let etcd: EtcdProcess;
  const servers: ServerProcess[] = [];
  const clients: { close(): Promise<void> }[] = [];
  before(async () => {
    etcd = await EtcdProcess.start();
  });
  after(async () => {
    for (const c of clients) await c.close().catch(() => undefined);
    await killAll(servers);
    await etcd?.stop();
  });
  const node = async (cluster: string, name: string, o: ServerOptions = {}) => {
    const s = await startServer({
      ...o,
      config: {
        etcd_endpoints: etcd.endpoint,
        cluster_name: cluster,
        shard: 0,
        node_name: name,
        ...o.config,
      },
    });
    servers.push(s);
    return s;
  };
  const summary = async (s: ServerProcess) => (await httpJson(`${s.httpBase}/summary`)) as unknown as Summary;
  const masterOf = (nodes: ServerProcess[]) =>
    waitFor(
      async () => {
        for (const n of nodes) if ((await summary(n)).cluster?.role === 'master') return n;
        return null;
      },
      { what: 'an elected master', timeoutMs: 20000, intervalMs: 100 },
    );
  /** A save on a new master, sent again while it is refused unwritten (no follower in sync yet). */
  const saveOnceInSync = (s: ServerProcess, i: number) =>
    waitFor(
      async () => {
        try {
          return await save(direct(s), i);
        } catch (err) {
          if ((err as ImsRpcError).notWritten === true) return null;
          throw err;
        }
      },
      { what: 'a follower in the in-sync set', timeoutMs: 20000, intervalMs: 50 },
    );
  const direct = (s: ServerProcess) => {
    const c = new ImsClient({ host: '127.0.0.1', port: s.ports.rpc, timeoutMs: 8000, batchSaves: false });
    clients.push(c);
    return c;
  };
  const save = (c: { savePeerMessage: ImsClient['savePeerMessage'] }, i: number) =>
    c.savePeerMessage({
      appId: 1,
      uid: 700n + BigInt(i % 7),
      deviceId: 1,
      cmd: Cmd.IM,
      raw: imBody(1, 2, `e${i}`),
    });

  it('the sentences sort into their kinds (the client and server share them)', () => {
    const p = (s: string) => `SavePeerMessage: ${s}`;
    assert.equal(
      refusalKind(p(refusalText.notMaster(0, { rpc: '10.0.0.1:13333', epoch: 4 }))),
      'not-written',
    );
    assert.equal(refusalKind(p(refusalText.notMaster(3, null))), 'not-written');
    assert.equal(refusalKind(p(refusalText.notEnoughReplicas(0, 1))), 'not-written');
    assert.equal(refusalKind(p(refusalText.notJoined())), 'not-written');
    assert.equal(refusalKind(p('not the master')), 'not-written');
    assert.equal(
      refusalKind(p('not the master of shard 0 (this node has not joined its shard yet)')),
      'not-written',
    );
    assert.equal(
      refusalKind(p(refusalText.leadershipLost('not the master of shard 0 (no master is known)'))),
      'may-be-stored',
    );
    assert.equal(refusalKind(p(refusalText.replicasShrank(0, 1))), 'may-be-stored');
    assert.equal(refusalKind(p(refusalText.shutdown())), 'may-be-stored');
    assert.equal(refusalKind('SavePeerMessage: internal error: not the master of shard 0 (x)'), null);
    assert.equal(refusalKind('SavePeerMessage: uid must be an integer'), null);
  });

  it('refusals over the wire: not written from a follower and before any write, may be stored when the set shrinks while a save waits; no prefix, no stack', async () => {
    assert.equal(cli(['init', '--etcd', etcd.endpoint, '--cluster', 'er', '--shards', '1']).code, 0);
    const cfg = { min_insync_replicas: 1, replica_lag_timeout_ms: 600 };
    const nodes = [await node('er', 'a', { config: cfg }), await node('er', 'b', { config: cfg })];
    const master = await masterOf(nodes);
    const replica = nodes.find((n) => n !== master)!;
    await waitFor(async () => (await summary(master)).replication.master.inSyncReplicas === 1, {
      what: 'the replica in sync',
      timeoutMs: 15000,
    });
    const m = direct(master);
    await save(m, 0);

    // A follower refuses before writing: not written, safe to retry.
    await assert.rejects(save(direct(replica), 1), (err: unknown) => {
      assert.ok(err instanceof ImsRpcError);
      assert.match(
        err.message,
        /^SavePeerMessage: not the master of shard 0 \(master is 127\.0\.0\.1:\d+, epoch \d+\)$/,
      );
      assert.equal(err.notWritten, true);
      assert.equal(err.mayBeStored, false);
      return true;
    });

    // The only in-sync replica stops: the save already waiting was written, so it may be stored.
    const cc = new ImsClusterClient({ etcd: [etcd.endpoint], cluster: 'er', failoverTimeoutMs: 1500 });
    clients.push(cc);
    await cc.connect();
    process.kill(replica.proc.pid!, 'SIGSTOP');
    try {
      // Through ImsClusterClient: a may-be-stored failure reaches the caller, never sent again.
      await assert.rejects(save(cc, 2), (err: unknown) => {
        assert.ok(err instanceof ImsRpcError);
        assert.match(
          err.message,
          /^SavePeerMessage: not enough in-sync replicas \(0 of 1 required\) while the save waited; the save may be stored$/,
        );
        assert.equal(err.mayBeStored, true);
        assert.equal(err.notWritten, false);
        return true;
      });
      // Now refused before writing: nothing written, and the log end does not move.
      const end = (await summary(master)).storage.next_message_id;
      await assert.rejects(save(m, 3), (err: unknown) => {
        assert.ok(err instanceof ImsRpcError);
        assert.equal(
          err.message,
          'SavePeerMessage: not enough in-sync replicas (0 of 1 required); nothing written',
        );
        assert.equal(err.notWritten, true);
        return true;
      });
      assert.equal((await summary(master)).storage.next_message_id, end, 'nothing written');
      // ImsClusterClient sends a not-written save again until failoverTimeoutMs, then hands it over.
      const t = performance.now();
      await assert.rejects(save(cc, 4), (err: unknown) => {
        assert.ok(err instanceof ImsRpcError);
        assert.equal(err.notWritten, true, err.message);
        return true;
      });
      assert.ok(performance.now() - t >= 1500, 'retried until failoverTimeoutMs');
      assert.equal((await summary(master)).storage.next_message_id, end, 'still nothing written');
    } finally {
      process.kill(replica.proc.pid!, 'SIGCONT');
    }
    for (const s of [master, replica]) {
      assert.doesNotMatch(s.logText(), /internal error/);
      // A stack trace would show its frames as "    at …" lines.
      assert.doesNotMatch(s.logText(), /^\s+at /m);
    }
    assert.match(
      master.logText(),
      /refused \(not written\): not enough in-sync replicas \(0 of 1 required\); nothing written/,
    );
    assert.match(
      master.logText(),
      /refused \(may be stored\): not enough in-sync replicas \(0 of 1 required\) while the save waited/,
    );
  });

  it('ImsClusterClient: a master paused for less than its lease takes writes again within seconds after SIGCONT, with no failover', async () => {
    assert.equal(cli(['init', '--etcd', etcd.endpoint, '--cluster', 'pa', '--shards', '1']).code, 0);
    const cfg = { min_insync_replicas: 1 };
    const nodes = [await node('pa', 'p1', { config: cfg }), await node('pa', 'p2', { config: cfg })];
    const master = await masterOf(nodes);
    const epoch = (await summary(master)).cluster!.epoch;
    await waitFor(async () => (await summary(master)).replication.master.inSyncReplicas === 1, {
      what: 'the replica in sync',
      timeoutMs: 15000,
    });
    const client = new ImsClusterClient({ etcd: [etcd.endpoint], cluster: 'pa', failoverTimeoutMs: 30000 });
    clients.push(client);
    await client.connect();

    const acks: number[] = [];
    const failures: unknown[] = [];
    let stop = false;
    let i = 0;
    const worker = async () => {
      while (!stop) {
        try {
          await save(client, i++);
          acks.push(performance.now());
        } catch (err) {
          // Only a may-be-stored failure may reach the caller; every not-written one is retried.
          failures.push(err);
        }
      }
    };
    const workers = Array.from({ length: 16 }, worker);
    let late: Promise<unknown>[] = [];
    try {
      await waitFor(() => acks.length >= 200, { what: '200 saves acknowledged before the pause' });
      // Pause right after a renewal, so that the pause outlasts the master's proof of its lease (it
      // refuses writes when it resumes, until it renews) but not the lease itself (no failover).
      await waitFor(
        async () => {
          // leaseProvenForMs counts to when the master stops acknowledging: ttl 3 s less the 0.7 s margin.
          const proven = (await summary(master)).cluster!.leaseProvenForMs ?? 0;
          return proven > 1600 && proven < 1900;
        },
        { what: 'a lease renewed 0.4–0.7 s ago', intervalMs: 10 },
      );
      process.kill(master.proc.pid!, 'SIGSTOP');
      // The fault itself: a pause shorter than the 3 s lease. Saves sent during it wait in the socket and
      // reach the master before it has renewed its lease: it refuses them (not written) and the client
      // must send them again to the same master.
      await new Promise((r) => setTimeout(r, 1000));
      late = Array.from({ length: 16 }, (_, k) => save(client, 100_000 + k));
      await new Promise((r) => setTimeout(r, 1000));
      process.kill(master.proc.pid!, 'SIGCONT');
      const resumedAt = performance.now();
      const before = acks.filter((t) => t > resumedAt).length;
      await waitFor(() => acks.filter((t) => t > resumedAt).length >= before + 200, {
        what: () =>
          `200 saves acknowledged after SIGCONT (${acks.filter((t) => t > resumedAt).length} so far)`,
        timeoutMs: 6000,
      });
      // Every save sent during the pause was refused before any write, so each is acknowledged in the end.
      let settled: PromiseSettledResult<unknown>[] | null = null;
      void Promise.allSettled(late).then((r) => (settled = r));
      await waitFor(() => settled, { what: 'the saves sent during the pause answered', timeoutMs: 6000 });
      for (const r of settled!) {
        const why = r.status === 'rejected' ? String(r.reason) : '';
        assert.equal(r.status, 'fulfilled', `a save sent during the pause failed: ${why}`);
      }
      const took = performance.now() - resumedAt;
      console.log(`writes resumed: 200 acknowledgements ${Math.round(took)} ms after SIGCONT`);
    } finally {
      stop = true;
      await Promise.all(workers);
    }
    for (const err of failures) {
      assert.ok(
        (err as ImsRpcError).mayBeStored === true,
        `a failure that was not of the may-be-stored kind reached the caller: ${(err as Error).message}`,
      );
    }
    // The master did refuse after the pause (else this test would not exercise the client's retry).
    assert.match(master.logText(), /refused \(not written\): not the master of shard 0/);
    const after = await summary(master);
    assert.equal(after.cluster?.role, 'master', 'the same node still leads');
    assert.equal(after.cluster?.epoch, epoch, 'no failover: the same epoch');
  });

  it('an etcd outage is logged once per state change, not once per retry; the same master leading again is followed without a protocol error', async () => {
    assert.equal(cli(['init', '--etcd', etcd.endpoint, '--cluster', 'eo', '--shards', '1']).code, 0);
    const nodes = [await node('eo', 'o1'), await node('eo', 'o2')];
    const master = await masterOf(nodes);
    const follower = nodes.find((n) => n !== master)!;
    const epoch = (await summary(master)).cluster!.epoch;
    await saveOnceInSync(master, 1);
    const from = nodes.map((n) => n.lines().length);
    const outageMs = 8000;
    await etcd.halt();
    try {
      await new Promise((r) => setTimeout(r, outageMs)); // the fault itself: an 8 s etcd outage
      // The follower sleeps through etcd's return, so that the same master is elected again while the
      // follower's replication link to it stays open.
      process.kill(follower.proc.pid!, 'SIGSTOP');
    } finally {
      await etcd.resume();
    }
    const during = nodes.map((n, k) => n.lines().slice(from[k]));
    for (const lines of during) {
      const noisy = lines.filter((l) => /WARN|ERROR/.test(l));
      // Each node says that etcd went away once per kind of loss (registration, leadership), not every
      // 200 ms: a handful of lines, where a retry loop would write about 20.
      assert.ok(noisy.length <= 6, `${noisy.length} warning lines in ${outageMs} ms:\n${noisy.join('\n')}`);
    }
    try {
      await waitFor(
        async () => {
          const c = (await summary(master)).cluster!;
          return c.role === 'master' && c.epoch > epoch;
        },
        { what: 'the same master leading a new epoch', timeoutMs: 30000, intervalMs: 200 },
      );
    } finally {
      process.kill(follower.proc.pid!, 'SIGCONT');
    }
    const newEpoch = (await summary(master)).cluster!.epoch;
    await saveOnceInSync(master, 2);
    await waitFor(
      async () =>
        ((await httpJson(`${follower.httpBase}/summary`)).replication as { slave: { masterEpoch: number } })
          .slave?.masterEpoch === newEpoch,
      { what: `the follower on the master's epoch ${newEpoch}` },
    );
    assert.doesNotMatch(follower.logText(), /heartbeat of epoch \d+ on a link of epoch/);
    assert.doesNotMatch(follower.logText(), /ERROR/);
  });

  it('the in-sync set on clean stops: a stopped replica leaves once (not joined again); a stopped master records nothing, logs no error, and a replica takes over', async () => {
    assert.equal(cli(['init', '--etcd', etcd.endpoint, '--cluster', 'cs', '--shards', '1']).code, 0);
    const cfg = { min_insync_replicas: 1 };
    const nodes = [
      await node('cs', 's1', { config: cfg }),
      await node('cs', 's2', { config: cfg }),
      await node('cs', 's3', { config: cfg }),
    ];
    const master = await masterOf(nodes);
    const [gone, stays] = nodes.filter((n) => n !== master);
    const recorded = () => {
      const r = cli(['status', '--etcd', etcd.endpoint, '--cluster', 'cs', '--json']);
      return (JSON.parse(r.out) as { shards: { inSync: string[] }[] }).shards[0].inSync;
    };
    await waitFor(() => recorded().length === 3, { what: () => `all three in sync (${recorded().join()})` });
    await save(direct(master), 1);
    const goneName = nodes[0] === gone ? 's1' : nodes[1] === gone ? 's2' : 's3';
    await gone.stop();
    await waitFor(() => !recorded().includes(goneName), {
      what: () => `the set recorded without ${goneName} (${recorded().join()})`,
    });
    await save(direct(master), 2);
    const about = master.lines().filter((l) => l.includes(`replica ${goneName} `));
    const left = about.findIndex((l) => /left the in-sync set: disconnected/.test(l));
    assert.ok(left >= 0, `it left:\n${about.join('\n')}`);
    assert.deepEqual(
      about.slice(left + 1).filter((l) => /joined the in-sync set/.test(l)),
      [],
      'a disconnected replica does not join again',
    );

    await master.stop();
    assert.deepEqual(
      master.lines().filter((l) => /ERROR/.test(l)),
      [],
      'a clean stop logs no error',
    );
    // The set the stopped master left behind still holds the replica, so it may (and does) win.
    await waitFor(async () => (await summary(stays)).cluster?.role === 'master', {
      what: () => `the remaining in-sync replica elected (recorded set ${recorded().join()})`,
      timeoutMs: 20000,
      intervalMs: 100,
    });
  });
});
