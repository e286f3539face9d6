/**
 * Acknowledged replication, the ims extension of the sync link: heartbeats and acknowledgements make lag
 * exact, epochs let a slave that ran ahead of a restarted master cut its tail back, and
 * min_insync_replicas holds a save's acknowledgement until a replica has it on disk. Real processes:
 * masters and slaves are SIGKILLed and SIGSTOPped, and folders are checked afterwards.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { ImsClient, ImsRpcError } from '../../src/client/index.js';
import { Cmd } from '../../src/format/constants.js';
import { decodeHelloBody, encodeExtendedSyncBegin, encodeFrame } from '../../src/format/sync-frames.js';
import { MessageStore } from '../../src/storage/index.js';
import { removeDir, tempDir } from '../support/fixtures.js';
import { clientFor, imBody } from '../support/rpc-client.js';
import { startServer, killAll, type ServerOptions, type ServerProcess } from '../support/server-process.js';
import { holdsFor, waitFor } from '../support/wait.js';
import { APP } from '../support/workload.js';
import { RawSyncSocket, httpJson, queryAnswers, waitIdentical, writePeer } from './support.js';

interface SlaveSummary {
  connected: boolean;
  caughtUp: boolean;
  lagMs: number;
  lagBytes: number | null;
  acknowledging: boolean;
  masterEpoch: number | null;
  masterLogEnd: number | null;
  cursor: number;
}
interface MasterSlaveSummary {
  acknowledging: boolean;
  ackedEnd: number | null;
  lagBytes: number;
  lagMs: number | null;
  inSync: boolean | null;
}
interface Summary {
  storage: { next_message_id: number; durable_message_id: number };
  replication: {
    epoch: number;
    master: { slaves: MasterSlaveSummary[]; inSyncReplicas: number; minInsyncReplicas: number };
    slave: SlaveSummary | null;
  };
}

const summary = async (s: ServerProcess) => (await httpJson(`${s.httpBase}/summary`)) as unknown as Summary;

describe('acknowledged replication (ims extensions of the sync link)', () => {
  const servers: ServerProcess[] = [];
  const clients: ImsClient[] = [];
  const dirs: string[] = [];
  after(async () => {
    for (const c of clients) await c.close().catch(() => undefined);
    await killAll(servers);
    for (const d of dirs) removeDir(d);
  });
  const start = async (o: ServerOptions) => {
    const s = await startServer(o);
    servers.push(s);
    return s;
  };
  const client = async (s: ServerProcess) => {
    const c = clientFor(s, 15000);
    await c.connect();
    clients.push(c);
    return c;
  };
  const save = (c: ImsClient, i: number) =>
    c.savePeerMessage({
      appId: APP,
      uid: 2000n + BigInt(i % 7),
      deviceId: 1,
      cmd: Cmd.IM,
      raw: imBody(1, 2, `m${i}`),
    });

  it('an idle slave is caught up within two seconds, with lag 0 on both sides, and stays so', async () => {
    const master = await start({});
    const slave = await start({ masterAddress: master.syncAddress });
    const c = await client(master);
    for (let i = 0; i < 20; i++) await save(c, i);
    const wroteAt = Date.now();
    const s = await waitFor(
      async () => {
        const sl = (await summary(slave)).replication.slave;
        return sl?.caughtUp && sl.lagBytes === 0 && sl.lagMs === 0 ? sl : null;
      },
      { what: 'the slave reports caughtUp with lag 0', timeoutMs: 5000 },
    );
    assert.ok(Date.now() - wroteAt < 2000, `caught up ${Date.now() - wroteAt} ms after the last write`);
    assert.equal(s.acknowledging, true);
    // Idle: the master's heartbeats keep it exact (it used to report a lag growing by 1 s a second).
    await holdsFor(
      async () => {
        const sl = (await summary(slave)).replication.slave!;
        return sl.caughtUp && sl.lagMs === 0 && sl.lagBytes === 0;
      },
      { what: 'caughtUp and lag 0 while idle', periodMs: 1500 },
    );
    const m = await summary(master);
    const sl = (await summary(slave)).replication;
    assert.ok(m.replication.epoch >= 1);
    assert.equal(sl.slave!.masterEpoch, m.replication.epoch);
    assert.equal(sl.slave!.masterLogEnd, m.storage.next_message_id);
    assert.equal(m.replication.master.slaves.length, 1);
    const rs = m.replication.master.slaves[0];
    assert.equal(rs.acknowledging, true);
    assert.equal(rs.ackedEnd, m.storage.next_message_id);
    assert.equal(rs.lagBytes, 0);
    assert.equal(rs.lagMs, 0);
    assert.equal(rs.inSync, true);
    await slave.stop();
    await master.stop();
  });

  it('min_insync_replicas=1 with no replica: saves fail at once and write nothing; readiness says why', async () => {
    const master = await start({ config: { min_insync_replicas: 1 } });
    const c = await client(master);
    const before = (await summary(master)).storage.next_message_id;
    const t = Date.now();
    await assert.rejects(save(c, 1), (err: Error) => {
      assert.ok(err instanceof ImsRpcError);
      assert.match(err.message, /not enough in-sync replicas \(0 of 1 required\)/);
      return true;
    });
    assert.ok(Date.now() - t < 1000, 'at once, not after a wait');
    assert.equal((await summary(master)).storage.next_message_id, before, 'nothing written');
    const ready = await fetch(`${master.httpBase}/health/ready`);
    assert.equal(ready.status, 503);
    assert.match(await ready.text(), /not enough in-sync replicas \(0 of 1 required\)/);
    // A replica joins: saves are acknowledged again, and the replica holds each one on its disk.
    const slave = await start({ masterAddress: master.syncAddress });
    await waitFor(async () => (await fetch(`${master.httpBase}/health/ready`)).status === 200, {
      what: 'readiness once the replica is in sync',
    });
    const r = await save(c, 2);
    const sl = (await summary(slave)).storage;
    assert.ok(sl.durable_message_id > r.msgId, 'acknowledged only once it was durable on the replica');
  });

  it('SIGSTOP of the only in-sync replica: saves fail within replica_lag_timeout_ms plus a margin, and succeed after SIGCONT', async () => {
    const lagTimeout = 1000;
    const master = await start({ config: { min_insync_replicas: 1, replica_lag_timeout_ms: lagTimeout } });
    const slave = await start({ masterAddress: master.syncAddress });
    const c = await client(master);
    await waitFor(async () => (await summary(master)).replication.master.inSyncReplicas === 1, {
      what: 'the replica in sync',
    });
    await save(c, 1);
    process.kill(slave.proc.pid!, 'SIGSTOP');
    try {
      const t = Date.now();
      await assert.rejects(save(c, 2), /not enough in-sync replicas \(0 of 1 required\)/);
      const took = Date.now() - t;
      assert.ok(took < lagTimeout + 1500, `failed after ${took} ms`);
      await assert.rejects(save(c, 3), /not enough in-sync replicas \(0 of 1 required\)/);
      assert.match(master.logText(), /left the in-sync set/);
    } finally {
      process.kill(slave.proc.pid!, 'SIGCONT');
    }
    await waitFor(
      async () => {
        try {
          await save(c, 4);
          return true;
        } catch {
          return false;
        }
      },
      { what: 'a save acknowledged after SIGCONT', timeoutMs: 10000, intervalMs: 100 },
    );
    assert.match(master.logText(), /joined the in-sync set/);
  });

  it('reads answer acknowledged saves only: a save waiting for a paused replica is not synced, counted or listed, on the master or on the other replica, until it is acknowledged', async () => {
    const master = await start({ config: { min_insync_replicas: 2, replica_lag_timeout_ms: 60_000 } });
    const b = await start({ masterAddress: master.syncAddress });
    const c2 = await start({ masterAddress: master.syncAddress });
    const c = await client(master);
    const onC = await client(c2);
    await waitFor(async () => (await summary(master)).replication.master.inSyncReplicas === 2, {
      what: 'both replicas in sync',
    });
    const uid = 2000n; // save(i) with i % 7 === 0
    const first = await save(c, 0);
    await waitFor(
      async () =>
        (await onC.syncMessage({ appId: APP, uid, deviceId: 1, lastMsgId: 0 })).messages.some(
          (m) => m.msgId === first.msgId,
        ),
      { what: 'the first save readable on the replica once acknowledged' },
    );
    process.kill(b.proc.pid!, 'SIGSTOP');
    let pending: Promise<{ msgId: number }> | null = null;
    try {
      pending = save(c, 7);
      pending.catch(() => undefined);
      const end = (await summary(master)).storage.next_message_id;
      await waitFor(async () => (await summary(master)).storage.next_message_id > end, { what: 'written' });
      const written = (await summary(master)).storage.next_message_id;
      await waitFor(async () => (await summary(c2)).storage.next_message_id >= written, {
        what: 'the other replica holding the unacknowledged save',
      });
      const check = async (on: ImsClient, where: string) => {
        const sync = await on.syncMessage({ appId: APP, uid, deviceId: 1, lastMsgId: 0 });
        assert.deepEqual(
          sync.messages.map((m) => m.msgId),
          [first.msgId],
          `${where}: only the acknowledged save is synced`,
        );
        assert.equal(sync.lastMsgId, first.msgId, `${where}: the sync key stays at the acknowledged save`);
        const latest = await on.getLatestMessage({ appId: APP, uid, limit: 10 });
        assert.deepEqual(
          latest.messages.map((m) => m.msgId),
          [first.msgId],
          `${where}: latest messages`,
        );
        const count = await on.getNewCount({ appId: APP, uid, deviceId: 1, lastMsgId: first.msgId });
        assert.equal(count.count, 0, `${where}: count`);
      };
      await holdsFor(
        async () => {
          await check(c, 'master');
          await check(onC, 'replica');
          return true;
        },
        { what: 'unacknowledged save hidden', periodMs: 500 },
      );
    } finally {
      process.kill(b.proc.pid!, 'SIGCONT');
    }
    const second = await pending;
    const ids = async (on: ImsClient) =>
      (await on.syncMessage({ appId: APP, uid, deviceId: 1, lastMsgId: 0 })).messages
        .map((m) => m.msgId)
        .sort((x, y) => x - y);
    assert.deepEqual(await ids(c), [first.msgId, second.msgId], 'visible on the master once acknowledged');
    await waitFor(async () => (await ids(onC)).length === 2, {
      what: 'visible on the replica once acknowledged',
    });
    const count = await c.getNewCount({ appId: APP, uid, deviceId: 1, lastMsgId: first.msgId });
    assert.equal(count.count, 1, 'counted once acknowledged');
  });

  it('SIGKILL of the master with 64 saves in flight: the slave folder, opened on its own, holds every acknowledged save', async () => {
    const master = await start({ config: { min_insync_replicas: 1 } });
    const slave = await start({ masterAddress: master.syncAddress });
    const c = await client(master);
    await waitFor(async () => (await summary(master)).replication.master.inSyncReplicas === 1, {
      what: 'the replica in sync',
    });
    const acked = new Map<number, string>();
    let stop = false;
    const writer = async (w: number) => {
      for (let i = 0; !stop; i++) {
        const text = `w${w} #${i}`;
        try {
          const r = await c.savePeerMessage({
            appId: APP,
            uid: 3000n + BigInt(w),
            deviceId: 1,
            cmd: Cmd.IM,
            raw: imBody(1, 3000 + w, text),
          });
          acked.set(r.msgId, text);
        } catch {
          return;
        }
      }
    };
    const writers = Array.from({ length: 64 }, (_, w) => writer(w));
    await waitFor(() => acked.size >= 3000, { what: '3000 acknowledged saves', timeoutMs: 30000 });
    await master.kill9();
    stop = true;
    await Promise.all(writers);
    await slave.stop();
    const store = MessageStore.open({ root: slave.dataDir });
    try {
      for (const [id, text] of acked) {
        const rec = store.files.read(id);
        assert.ok(rec.body.includes(Buffer.from(text)), `acknowledged save ${id} (${text}) on the slave`);
      }
    } finally {
      await store.close();
    }
  });

  it('a slave ahead of its restarted master cuts its tail back to where the new epoch begins and follows', async () => {
    const masterDir = tempDir('ims-ack-m-');
    dirs.push(masterDir);
    let master = await start({ dataDir: masterDir, config: { durability: 'interval' } });
    const slave = await start({ masterAddress: master.syncAddress });
    let c = await client(master);
    const ids: number[] = [];
    for (let i = 0; i < 300; i++) ids.push(await writePeer(c, i));
    await waitIdentical(masterDir, slave.dataDir);
    await slave.stop();
    await master.stop();
    // Power cut on the master: its last 100 records never reached its disk (cut back at a record boundary).
    const cutAt = ids[200];
    const m0 = path.join(masterDir, 'message_0');
    const slaveTail = fs.readFileSync(path.join(slave.dataDir, 'message_0')).subarray(cutAt);
    fs.truncateSync(m0, cutAt);
    for (const f of ['peer_index', 'group_index', 'index_state'])
      fs.rmSync(path.join(masterDir, f), { force: true });
    master = await start({ dataDir: masterDir, ports: master.ports, config: { durability: 'interval' } });
    assert.match(master.logText(), /master epoch 2 begins at/);
    c = await client(master);
    // New writes take the lost ids, with other content.
    for (let i = 0; i < 50; i++) await writePeer(c, 10_000 + i, 7);
    const slave2 = await start({ dataDir: slave.dataDir, masterAddress: master.syncAddress });
    await waitIdentical(masterDir, slave2.dataDir);
    const line = await slave2.waitForLog(/cut back from \d+ to \d+/);
    assert.match(line, new RegExp(`cut back from ${slaveTail.length + cutAt} to ${cutAt}`));
    const aside = fs
      .readdirSync(slave2.dataDir)
      .filter((f) => f.startsWith('message_0.') && f !== 'message_0');
    assert.equal(aside.length, 1, `one file kept aside: ${aside.join()}`);
    assert.deepEqual(fs.readFileSync(path.join(slave2.dataDir, aside[0])), slaveTail);
    assert.equal(await queryAnswers(await client(slave2)), await queryAnswers(c));
    await waitFor(async () => (await summary(slave2)).replication.slave?.caughtUp, { what: 'caught up' });
    assert.equal((await summary(slave2)).replication.epoch, 2);
    await slave2.stop();
    await master.stop();
  });

  it('a slave refuses a master from an older epoch than it has seen', async () => {
    // This folder was a master twice (epochs 1 and 2); the new master is in its first epoch.
    const dir = tempDir('ims-ack-old-');
    dirs.push(dir);
    for (let i = 0; i < 2; i++) await (await start({ dataDir: dir, http: false })).stop();
    const master = await start({});
    const slave = await start({ dataDir: dir, masterAddress: master.syncAddress });
    const line = await slave.waitForLog(/epoch 1, older than epoch 2/);
    assert.match(line, /refusing its stream/);
    assert.equal((await summary(master)).replication.master.inSyncReplicas, 0);
  });

  it('a malformed extension frame is refused with a log line, the link dropped, nothing written', async () => {
    const master = await start({});
    const c = await client(master);
    await save(c, 1);
    const end = (await summary(master)).storage.next_message_id;
    const bad = [
      { frame: encodeFrame(2, Cmd.STORAGE_SYNC_ACK, Buffer.alloc(5)), why: /body is 5 bytes, expected 16/ },
      {
        frame: encodeFrame(2, 99, Buffer.alloc(16)),
        why: /expected MSG_STORAGE_SYNC_ACK \(231\), got cmd 99/,
      },
      { frame: encodeFrame(2, Cmd.STORAGE_SYNC_ACK, Buffer.alloc(16, 0xff)), why: /out of range/ },
    ];
    for (const { frame, why } of bad) {
      const s = await RawSyncSocket.connect(master.ports.sync);
      s.send(encodeExtendedSyncBegin(32));
      await waitFor(() => s.frames.length >= 1, { what: 'the hello' });
      assert.equal(s.frames[0].cmd, Cmd.STORAGE_SYNC_HELLO);
      const hello = decodeHelloBody(s.frames[0].body);
      assert.ok(hello.ok && hello.value.epoch >= 1 && hello.value.logEnd === end);
      s.send(frame);
      await waitFor(() => s.closed, { what: 'the link dropped' });
      await master.waitForLog(why);
    }
    assert.match(master.logText(), /refused a malformed extension frame/);
    assert.equal((await summary(master)).storage.next_message_id, end, 'nothing written');
  });
});
