/**
 * The chaos suite's link proxy, against a local echo server: it forwards, cuts with RST or as a silent
 * blackhole, heals, delays every chunk in order, and throttles. And the cluster's addressing through
 * the proxies: nodes publish the proxies' addresses (advertise_rpc) and followers reach the master
 * through their own link (peer_sync_addresses), so a cut link is the only path that breaks.
 */
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { performance } from 'node:perf_hooks';
import { after, before, describe, it } from 'node:test';
import { Etcd3 } from 'etcd3';
import { clusterKeys } from '../../src/cluster/cluster-keys.js';
import { EtcdProcess } from '../support/etcd.js';
import { holdsFor, waitFor } from '../support/wait.js';
import { LinkProxy } from './support/link-proxy.js';
import { ChaosCluster, waitAcks } from './support/chaos-cluster.js';
import { Workload } from './support/history.js';

/** A connection that collects what comes back. */
function connect(
  address: string,
): Promise<{ socket: net.Socket; received: () => string; closed: () => string | null }> {
  return new Promise((resolve, reject) => {
    const i = address.lastIndexOf(':');
    const socket = net.connect({ host: address.slice(0, i), port: Number(address.slice(i + 1)) });
    let data = '';
    let closed: string | null = null;
    socket.on('data', (c: Buffer) => (data += c.toString()));
    socket.on('error', (e: NodeJS.ErrnoException) => (closed = e.code ?? e.message));
    socket.on('close', () => (closed ??= 'closed'));
    socket.once('connect', () => resolve({ socket, received: () => data, closed: () => closed }));
    socket.once('error', reject);
  });
}

describe('chaos link proxy', () => {
  let echo: net.Server;
  let target = '';
  before(async () => {
    echo = net.createServer((s) => {
      s.on('error', () => undefined);
      s.pipe(s);
    });
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
    target = `127.0.0.1:${(echo.address() as net.AddressInfo).port}`;
  });
  after(() => echo.close());

  it('forwards, delays each chunk in order, and throttles', async () => {
    const p = await LinkProxy.start('t', target);
    try {
      const c = await connect(p.address);
      c.socket.write('hello');
      await waitFor(() => c.received() === 'hello', { what: 'the echo' });
      p.delayMs = 300;
      const sent = performance.now();
      for (const part of ['a', 'b', 'c']) c.socket.write(part);
      await waitFor(() => c.received() === 'helloabc', { what: 'the delayed echo, in order' });
      // Both directions are delayed: the echo comes back no sooner than twice the delay.
      assert.ok(performance.now() - sent >= 2 * 300 - 20, `${performance.now() - sent} ms`);
      p.delayMs = 0;
      p.bytesPerSecond = 20_000;
      const big = 'x'.repeat(10_000);
      const t0 = performance.now();
      c.socket.write(big);
      await waitFor(() => c.received().length === 8 + big.length, {
        what: 'the throttled echo',
        timeoutMs: 10000,
      });
      assert.ok(performance.now() - t0 >= 400, `10 kB at 20 kB/s each way took ${performance.now() - t0} ms`);
      c.socket.destroy();
    } finally {
      await p.close();
    }
  });

  it('a reset cut RSTs open connections and new ones; heal lets them through again', async () => {
    const p = await LinkProxy.start('t', target);
    try {
      const c = await connect(p.address);
      p.cut('reset');
      await waitFor(() => c.closed() === 'ECONNRESET', { what: 'the open connection reset' });
      // A new connection is reset at once: before or just after the client sees it connected.
      const refused = await connect(p.address).then(
        (d) => waitFor(() => d.closed(), { what: 'a new connection reset' }),
        (e: NodeJS.ErrnoException) => e.code,
      );
      assert.match(String(refused), /ECONNRESET|closed/);
      p.heal();
      const e = await connect(p.address);
      e.socket.write('again');
      await waitFor(() => e.received() === 'again', { what: 'the echo after healing' });
      e.socket.destroy();
    } finally {
      await p.close();
    }
  });

  it('a blackhole swallows bytes both ways without closing; healing resets what lost bytes', async () => {
    const p = await LinkProxy.start('t', target);
    try {
      const c = await connect(p.address);
      p.cut('blackhole');
      c.socket.write('lost');
      const d = await connect(p.address);
      d.socket.write('lost too');
      // Silence is the behaviour under test: nothing comes back and nothing closes for a while.
      await holdsFor(() => c.received() === '' && d.received() === '' && !c.closed() && !d.closed(), {
        what: 'silence in the blackhole',
        periodMs: 500,
      });
      p.heal();
      await waitFor(() => c.closed() !== null && d.closed() !== null, {
        what: 'blackholed connections reset',
      });
      const e = await connect(p.address);
      e.socket.write('through');
      await waitFor(() => e.received() === 'through', { what: 'the echo after healing' });
      e.socket.destroy();
    } finally {
      await p.close();
    }
  });
});

describe('cluster addressing through the proxies', () => {
  let etcd: EtcdProcess;
  let cluster: ChaosCluster | null = null;
  before(async () => {
    etcd = await EtcdProcess.start();
  });
  after(async () => {
    await cluster?.close();
    await etcd?.stop();
  });

  it(
    'nodes publish advertise_rpc; followers reach the master over peer_sync_addresses; clients over the rpc proxy',
    { timeout: 120_000 },
    async () => {
      cluster = await ChaosCluster.start(etcd, { cluster: 'addressing' });
      const m = await cluster.waitMaster();
      const kv = new Etcd3({ hosts: `http://${etcd.endpoint}` });
      try {
        for (const n of cluster.names) {
          const info = JSON.parse((await kv.get(clusterKeys('addressing').node(0, n)).string())!) as {
            rpc: string;
            sync: string;
          };
          assert.equal(info.rpc, cluster.rpc.get(n)!.address, `${n} publishes its rpc proxy`);
          assert.equal(info.sync, cluster.server(n).syncAddress, `${n} publishes its bound sync address`);
        }
      } finally {
        kv.close();
      }
      const followers = cluster.names.filter((n) => n !== m);
      for (const f of followers)
        await waitFor(() => cluster!.sync.get(`${f}>${m}`)!.openConnections > 0, {
          what: `${f}'s link to the master ${m} in use`,
        });
      const w = new Workload(await cluster.clusterClient(), { seed: 1, inFlight: 4, devices: 1 });
      w.start();
      await waitAcks(w, 50, 'saves through the rpc proxy');
      assert.ok(cluster.rpc.get(m)!.accepted > 0, 'the client reached the master through its proxy');
      // Cutting one follower's link takes it, and only it, out of the in-sync set.
      cluster.sync.get(`${followers[0]}>${m}`)!.cut('reset');
      const members = await cluster.waitInSync(
        (s) => !s.includes(followers[0]),
        `${followers[0]} out of sync`,
      );
      assert.ok(members.includes(followers[1]), `the other follower stays in sync (${members.join(',')})`);
      await w.stop();
    },
  );
});
