/**
 * Cluster mode on a real etcd: the refusals at start-up, `ims cluster init|status`, election of a
 * shard's master, writes refused by followers, failover after SIGKILL, and a paused master that lost
 * its lease acknowledging nothing and rejoining as a follower.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { ImsClient } from '../../src/client/index.js';
import { Cmd } from '../../src/format/constants.js';
import { EtcdProcess } from '../support/etcd.js';
import { removeDir, tempDir } from '../support/fixtures.js';
import { imBody } from '../support/rpc-client.js';
import {
  MAIN_JS,
  startServer,
  killAll,
  type ServerOptions,
  type ServerProcess,
} from '../support/server-process.js';
import { waitFor } from '../support/wait.js';
import { blockDifference, httpJson } from '../replication/support.js';

interface ClusterSummary {
  cluster: {
    role: string;
    epoch: number;
    master: { node: string; rpc: string; epoch: number } | null;
  } | null;
}

function cli(args: string[]) {
  const r = spawnSync(process.execPath, [MAIN_JS, 'cluster', ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('cluster mode on etcd', () => {
  let etcd: EtcdProcess;
  const servers: ServerProcess[] = [];
  const clients: ImsClient[] = [];
  const dirs: string[] = [];
  before(async () => {
    etcd = await EtcdProcess.start();
  });
  after(async () => {
    for (const c of clients) await c.close().catch(() => undefined);
    await killAll(servers);
    for (const d of dirs) removeDir(d);
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
  const role = async (s: ServerProcess) =>
    ((await httpJson(`${s.httpBase}/summary`)) as unknown as ClusterSummary).cluster;
  const save = async (s: ServerProcess, i: number) => {
    const c = new ImsClient({ host: '127.0.0.1', port: s.ports.rpc, timeoutMs: 5000 });
    clients.push(c);
    return c.savePeerMessage({
      appId: 1,
      uid: 500n + BigInt(i % 5),
      deviceId: 1,
      cmd: Cmd.IM,
      raw: imBody(1, 2, `c${i}`),
    });
  };

  /**
   * The first save of a new master: with min_insync_replicas=1 (cluster mode's default) it is refused,
   * unwritten, until a follower holding the master's log end has joined the in-sync set.
   */
  const firstSave = (s: ServerProcess, i: number) =>
    waitFor(
      async () => {
        try {
          return await save(s, i);
        } catch (err) {
          if (/not enough in-sync replicas \(0 of 1 required\)/.test((err as Error).message)) return null;
          throw err;
        }
      },
      { what: 'a follower in the in-sync set', timeoutMs: 15000, intervalMs: 50 },
    );

  it('ims cluster init writes the shard map once; status shows it', () => {
    const init = cli(['init', '--etcd', etcd.endpoint, '--cluster', 'tc', '--shards', '2']);
    assert.equal(init.code, 0, init.err);
    assert.match(init.out, /shard map written, 2 shard\(s\)/);
    assert.equal(cli(['init', '--etcd', etcd.endpoint, '--cluster', 'tc', '--shards', '2']).code, 0);
    const change = cli(['init', '--etcd', etcd.endpoint, '--cluster', 'tc', '--shards', '3']);
    assert.equal(change.code, 1);
    assert.match(change.err, /already has a shard map of 2 shard\(s\)/);
    const status = cli(['status', '--etcd', etcd.endpoint, '--cluster', 'tc', '--json']);
    assert.equal(status.code, 0, status.err);
    const report = JSON.parse(status.out) as { shards: { shard: number; master: unknown }[] };
    assert.deepEqual(
      report.shards.map((s) => [s.shard, s.master]),
      [
        [0, null],
        [1, null],
      ],
    );
    const usage = cli(['init', '--etcd', etcd.endpoint, '--cluster', 'tc']);
    assert.equal(usage.code, 2);
    assert.match(usage.err, /--shards N is missing/);
  });

  it('refuses to start: master_address with etcd_endpoints, no shard map, an unknown shard, a foreign folder', async () => {
    const both = await startServer({
      waitReady: false,
      masterAddress: '127.0.0.1:1',
      config: { etcd_endpoints: etcd.endpoint },
    });
    servers.push(both);
    assert.equal((await both.waitExit()).code, 2);
    assert.match(both.logText(), /key "master_address" cannot be set with etcd_endpoints/);

    const noMap = await node('nomap', 'a', { waitReady: false });
    assert.equal((await noMap.waitExit()).code, 1);
    assert.match(
      noMap.logText(),
      /cluster_name=nomap: etcd has no shard map for this cluster \(run: ims cluster init/,
    );

    assert.equal(cli(['init', '--etcd', etcd.endpoint, '--cluster', 'one', '--shards', '1']).code, 0);
    const unknown = await node('one', 'a', { waitReady: false, config: { shard: 3 } });
    assert.equal((await unknown.waitExit()).code, 1);
    assert.match(unknown.logText(), /shard=3: cluster "one" has 1 shard\(s\), numbered 0 to 0/);

    assert.equal(cli(['init', '--etcd', etcd.endpoint, '--cluster', 'two', '--shards', '1']).code, 0);
    const dir = tempDir('ims-cl-foreign-');
    dirs.push(dir);
    const first = await node('one', 'a', { dataDir: dir });
    await first.stop();
    const foreign = await node('two', 'a', { dataDir: dir, waitReady: false });
    assert.equal((await foreign.waitExit()).code, 1);
    assert.match(
      foreign.logText(),
      /storage_root=.*: the data folder belongs to cluster "one" shard 0, not cluster "two" shard 0/,
    );
  });

  it('one name per node: the default is recorded in the data folder and kept; another name for that folder, or a second live node with the same name, is refused', async () => {
    assert.equal(cli(['init', '--etcd', etcd.endpoint, '--cluster', 'nm', '--shards', '1']).code, 0);
    const dir = tempDir('ims-cl-name-');
    dirs.push(dir);
    const unnamed = await startServer({
      dataDir: dir,
      config: { etcd_endpoints: etcd.endpoint, cluster_name: 'nm', shard: 0, min_insync_replicas: 0 },
    });
    servers.push(unnamed);
    const expected = `${os.hostname()}:${unnamed.ports.rpc}`;
    await waitFor(async () => (await role(unnamed))?.role === 'master', { what: 'the one-node shard led' });
    const summary = (await httpJson(`${unnamed.httpBase}/summary`)) as unknown as {
      cluster: { node: string; inSync: string[]; warning: string | null };
    };
    assert.equal(summary.cluster.node, expected, 'hostname and the bound rpc port, not 127.0.0.1:0');
    assert.deepEqual(summary.cluster.inSync, [expected]);
    assert.match(summary.cluster.warning ?? '', /min_insync_replicas=0: .*can be lost on failover/);
    assert.match(unnamed.logText(), /min_insync_replicas=0: .*can be lost on failover/);
    const identity = JSON.parse(fs.readFileSync(path.join(dir, 'cluster_identity'), 'utf8')) as {
      node: string;
    };
    assert.equal(identity.node, expected);
    await unnamed.stop();
    // Restarted on another port with no node_name: the same name, from the folder.
    const again = await startServer({
      dataDir: dir,
      config: { etcd_endpoints: etcd.endpoint, cluster_name: 'nm', shard: 0, min_insync_replicas: 0 },
    });
    servers.push(again);
    await waitFor(async () => (await role(again))?.role === 'master', { what: 'led again' });
    assert.equal(
      ((await httpJson(`${again.httpBase}/summary`)) as unknown as { cluster: { node: string } }).cluster
        .node,
      expected,
    );
    await again.stop();
    const renamed = await node('nm', 'other', { dataDir: dir, waitReady: false });
    assert.equal((await renamed.waitExit()).code, 1);
    assert.match(renamed.logText(), /node_name=other: the data folder .* joined shard 0 as "[^"]+"/);

    const a = await node('nm', 'twin', { config: { min_insync_replicas: 0 } });
    const twin = await node('nm', 'twin', { waitReady: false, config: { min_insync_replicas: 0 } });
    assert.equal((await twin.waitExit()).code, 1);
    assert.match(
      twin.logText(),
      /node_name=twin: another live node of shard 0 is registered under this name .*every node of a shard needs its own name/,
    );
    assert.equal((await role(a))?.role, 'master', 'the first keeps leading');
  });

  it('elects one master; followers refuse writes naming it; SIGKILL of the master elects another, and the old one rejoins as a follower', async () => {
    assert.equal(cli(['init', '--etcd', etcd.endpoint, '--cluster', 'fo', '--shards', '1']).code, 0);
    const nodes = [await node('fo', 'n1'), await node('fo', 'n2'), await node('fo', 'n3')];
    const masterOf = async () => {
      const roles = await Promise.all(
        nodes.filter((n) => !n.exited).map(async (n) => [n, await role(n)] as const),
      );
      const masters = roles.filter(([, r]) => r?.role === 'master');
      assert.ok(masters.length <= 1, `two masters at once: ${masters.map(([n]) => n.rpcAddress).join(', ')}`);
      return masters[0]?.[0] ?? null;
    };
    const master = await waitFor(masterOf, { what: 'an elected master', timeoutMs: 15000, intervalMs: 100 });
    await firstSave(master, 0);
    for (let i = 1; i < 20; i++) await save(master, i);
    const follower = nodes.find((n) => n !== master)!;
    await assert.rejects(save(follower, 99), (err: Error) => {
      assert.match(
        err.message,
        new RegExp(`not the master of shard 0 \\(master is ${master.rpcAddress}, epoch \\d+\\)`),
      );
      return true;
    });
    const epoch1 = (await role(master))!.epoch;
    const killedAt = Date.now();
    await master.kill9();
    const next = await waitFor(async () => (await masterOf()) ?? null, {
      what: 'a new master after SIGKILL',
      timeoutMs: 20000,
      intervalMs: 100,
    });
    assert.notEqual(next, master);
    await waitFor(
      async () => {
        try {
          await save(next, 100);
          return true;
        } catch {
          return false;
        }
      },
      { what: 'a save acknowledged by the new master', timeoutMs: 10000, intervalMs: 100 },
    );
    const failoverMs = Date.now() - killedAt;
    console.log(`failover: first acknowledged save ${failoverMs} ms after SIGKILL of the master`);
    assert.ok((await role(next))!.epoch > epoch1, 'the new master leads a newer epoch');
    const back = await node('fo', master === nodes[0] ? 'n1' : master === nodes[1] ? 'n2' : 'n3', {
      dataDir: master.dataDir,
    });
    await waitFor(async () => (await role(back))?.role === 'follower', { what: 'the old master follows' });
    for (let i = 200; i < 220; i++) await save(next, i);
    const live = [next, back, ...nodes.filter((n) => n !== master && n !== next)];
    for (const n of live.slice(1)) {
      let diff: string | null = '';
      await waitFor(() => (diff = blockDifference(next.dataDir, n.dataDir)) === null, {
        what: () => `identical block files (${diff})`,
        timeoutMs: 15000,
        intervalMs: 100,
      });
    }
    // Readiness: the master while its lease is proven; a follower while linked to the current master.
    assert.equal((await fetch(`${next.httpBase}/health/ready`)).status, 200);
    await waitFor(async () => (await fetch(`${back.httpBase}/health/ready`)).status === 200, {
      what: 'the rejoined follower ready',
    });
    const json = cli(['status', '--etcd', etcd.endpoint, '--cluster', 'fo', '--json']);
    const shard0 = (JSON.parse(json.out) as { shards: { inSync: string[]; master: { node: string } }[] })
      .shards[0];
    assert.ok(
      shard0.inSync.includes(shard0.master.node),
      `in-sync set ${shard0.inSync.join()} holds the master`,
    );
    const status = cli(['status', '--etcd', etcd.endpoint, '--cluster', 'fo']);
    assert.equal(status.code, 0, status.err);
    assert.match(
      status.out,
      new RegExp(`shard 0: master \\S+ \\(${next.rpcAddress.replace(/\./g, '\\.')}\\)`),
    );
  });

  it('a paused master that lost its lease acknowledges nothing after SIGCONT and rejoins as a follower', async () => {
    assert.equal(cli(['init', '--etcd', etcd.endpoint, '--cluster', 'pz', '--shards', '1']).code, 0);
    const nodes = [await node('pz', 'p1'), await node('pz', 'p2')];
    const master = await waitFor(
      async () => {
        for (const n of nodes) if ((await role(n))?.role === 'master') return n;
        return null;
      },
      { what: 'an elected master', timeoutMs: 15000, intervalMs: 100 },
    );
    const other = nodes.find((n) => n !== master)!;
    await firstSave(master, 1);
    process.kill(master.proc.pid!, 'SIGSTOP');
    // A save sent while it is paused waits in the socket; it must not be acknowledged when it resumes.
    const late = save(master, 2);
    late.catch(() => undefined);
    await waitFor(async () => (await role(other))?.role === 'master', {
      what: 'the other node elected after the lease expired',
      timeoutMs: 20000,
      intervalMs: 100,
    });
    process.kill(master.proc.pid!, 'SIGCONT');
    await assert.rejects(late, /not the master of shard 0/);
    await waitFor(async () => (await role(master))?.role === 'follower', { what: 'the old master follows' });
    await firstSave(other, 3);
    let diff: string | null = '';
    await waitFor(() => (diff = blockDifference(other.dataDir, master.dataDir)) === null, {
      what: () =>
        `identical block files (${diff}); the old master's log:\n${master.logText().split('\n').slice(-25).join('\n')}`,
      timeoutMs: 15000,
      intervalMs: 100,
    });
  });

  it('etcd stopped: reads go on, writes stop being acknowledged once leadership cannot be proven, and resume with etcd', async () => {
    assert.equal(cli(['init', '--etcd', etcd.endpoint, '--cluster', 'es', '--shards', '1']).code, 0);
    const nodes = [await node('es', 'e1'), await node('es', 'e2')];
    const master = await waitFor(
      async () => {
        for (const n of nodes) if ((await role(n))?.role === 'master') return n;
        return null;
      },
      { what: 'an elected master', timeoutMs: 15000, intervalMs: 100 },
    );
    const saved = await firstSave(master, 1);
    await etcd.halt();
    try {
      const reader = new ImsClient({ host: '127.0.0.1', port: master.ports.rpc, timeoutMs: 5000 });
      clients.push(reader);
      // Within the lease (3 s) the master stops acknowledging; it never acknowledges past it.
      const haltedAt = Date.now();
      await waitFor(
        async () => {
          try {
            await save(master, 2);
            return false;
          } catch (err) {
            return /not the master of shard 0/.test((err as Error).message);
          }
        },
        { what: 'writes refused without etcd', timeoutMs: 10000, intervalMs: 100 },
      );
      assert.ok(Date.now() - haltedAt < 4000, `refused after ${Date.now() - haltedAt} ms`);
      const sync = await reader.syncMessage({ appId: 1, uid: 501n, deviceId: 1, lastMsgId: 0 });
      assert.ok(
        sync.messages.some((m) => m.msgId === saved.msgId),
        'reads still answered',
      );
    } finally {
      await etcd.resume();
    }
    await waitFor(
      async () => {
        for (const n of nodes) {
          if ((await role(n))?.role !== 'master') continue;
          try {
            await save(n, 3);
            return true;
          } catch {
            return false;
          }
        }
        return false;
      },
      { what: 'writes acknowledged again once etcd is back', timeoutMs: 30000, intervalMs: 200 },
    );
  });
});
