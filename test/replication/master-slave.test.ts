import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { ImsClient } from '../../src/client/index.js';
import { encodeSyncBegin } from '../../src/format/sync-frames.js';
import { imBody } from '../support/workload.js';
import { removeDir, tempDir } from '../support/fixtures.js';
import { startServer, type ServerProcess } from '../support/server-process.js';
import {
  RawSyncSocket,
  SMALL_BLOCK,
  assertNoZeroPadding,
  blockNames,
  httpJson,
  queryAnswers,
  waitIdentical,
  writeHistory,
  writePeer,
} from './support.js';
import { waitFor } from '../support/wait.js';

const config = { block_size: SMALL_BLOCK };

describe('master and slave processes', () => {
  const servers: ServerProcess[] = [];
  const dirs: string[] = [];
  const clients: ImsClient[] = [];
  after(async () => {
    for (const c of clients) await c.close().catch(() => undefined);
    for (const s of servers) await s.kill9().catch(() => undefined);
    for (const s of servers) removeDir(path.dirname(s.configPath));
    for (const d of dirs) removeDir(d);
  });
  const start = async (opts: Parameters<typeof startServer>[0]) => {
    const s = await startServer(opts);
    servers.push(s);
    return s;
  };
  const client = async (s: ServerProcess) => {
    const c = new ImsClient({ host: '127.0.0.1', port: s.ports.rpc });
    await c.connect();
    clients.push(c);
    return c;
  };

  const masterDir = tempDir('ims-master-');
  const slaveDir = tempDir('ims-slave-');
  dirs.push(masterDir, slaveDir);
  let master: ServerProcess;
  let slave: ServerProcess;
  let masterRpc: ImsClient;
  let written = 0;

  it('an empty slave catches up over several blocks while writes go on, byte-identical, and answers as the master', async () => {
    await writeHistory(masterDir, 6000, 3, 300);
    assert.ok(blockNames(masterDir).length >= 3, 'history spans several blocks');
    master = await start({ dataDir: masterDir, config });
    masterRpc = await client(master);
    slave = await start({ dataDir: slaveDir, masterAddress: master.syncAddress, config });
    // Writes during catch-up (and right after it): the same loop serves backlog and live records.
    const live: Promise<number>[] = [];
    for (let i = 0; i < 300; i++) {
      live.push(writePeer(masterRpc, written++, 200));
      // Not a wait for anything: spreads the writes over the catch-up so some land while it runs.
      if (i % 20 === 0) await new Promise((r) => setTimeout(r, 5));
    }
    const ids = await Promise.all(live);
    assert.equal(new Set(ids).size, ids.length);
    await slave.waitForLog(/caught up with master/);
    await waitIdentical(masterDir, slaveDir);
    assertNoZeroPadding(slaveDir, SMALL_BLOCK);

    const slaveRpc = await client(slave);
    assert.equal(await queryAnswers(slaveRpc), await queryAnswers(masterRpc));

    // Replication state for /summary: the master lists the slave with its cursor; the slave its link.
    const masterEnd = fs.statSync(path.join(masterDir, blockNames(masterDir).at(-1)!)).size;
    const m = await waitFor(
      async () => {
        const r = (await httpJson(`${master.httpBase}/summary`)).replication as {
          master: { slaves: { cursor: number; lagBytes: number; caughtUp: boolean }[] };
        };
        return r.master.slaves.length === 1 && r.master.slaves[0].lagBytes === 0 ? r : null;
      },
      { what: 'master summary with a caught-up slave' },
    );
    assert.equal(m.master.slaves[0].cursor % SMALL_BLOCK, masterEnd);
    assert.equal(m.master.slaves[0].caughtUp, true);
    const s = (await httpJson(`${slave.httpBase}/summary`)).replication as {
      role: string;
      slave: { connected: boolean; masterAddress: string; lastAppliedId: number; cursor: number };
    };
    assert.equal(s.role, 'slave');
    assert.equal(s.slave.connected, true);
    assert.equal(s.slave.masterAddress, master.syncAddress);
    assert.equal(s.slave.cursor, m.master.slaves[0].cursor);
    assert.ok(s.slave.lastAppliedId > 0 && s.slave.lastAppliedId < s.slave.cursor);
  });

  it('live writes after catch-up arrive; a slave killed with SIGKILL resumes from its cursor with no gap or duplicate', async () => {
    for (let i = 0; i < 50; i++) await writePeer(masterRpc, written++, 100);
    await waitIdentical(masterDir, slaveDir);

    await slave.kill9();
    const before = blockNames(slaveDir).map((n) => fs.statSync(path.join(slaveDir, n)).size);
    for (let i = 0; i < 700; i++) await writePeer(masterRpc, written++, 1500);
    slave = await start({ dataDir: slaveDir, masterAddress: master.syncAddress, config });
    const line = await slave.waitForLog(/connected to master .*cursor (\d+)/);
    const cursor = Number(/cursor (\d+)/.exec(line)![1]);
    assert.equal(
      cursor,
      (before.length - 1) * SMALL_BLOCK + before.at(-1)!,
      'the cursor is the end of what it had',
    );
    await waitIdentical(masterDir, slaveDir);
    assertNoZeroPadding(slaveDir, SMALL_BLOCK);
    assert.ok(blockNames(slaveDir).length > before.length, 'the resumed stream rolled into a new block');
  });

  it('a master restarted on the same ports is followed again after back-off', async () => {
    await master.stop('SIGTERM');
    await slave.waitForLog(/reconnecting to master .* in 400 ms/, 10000);
    master = await start({ dataDir: masterDir, config, ports: master.ports });
    const rpc = await client(master);
    for (let i = 0; i < 30; i++) await writePeer(rpc, written++, 50);
    await waitIdentical(masterDir, slaveDir);
    const backoffs = slave.output
      .map((l) => /reconnecting to master .* in (\d+) ms/.exec(l))
      .filter((m) => m !== null)
      .map((m) => Number(m![1]));
    // After the SIGKILL restart the link broke once at the master's stop: 100, 200, 400, ... doubling.
    assert.deepEqual(backoffs.slice(0, 3), [100, 200, 400]);
    const s = (await httpJson(`${slave.httpBase}/summary`)).replication as { slave: { connected: boolean } };
    assert.equal(s.slave.connected, true);
  });

  it('live writes are batched: at most 1000 messages a frame, the rest within about a second', async () => {
    const rpc = await client(master);
    const end = ((await httpJson(`${master.httpBase}/summary`)).storage as { next_message_id: number })
      .next_message_id;
    const s = await RawSyncSocket.connect(master.ports.sync);
    try {
      s.send(encodeSyncBegin(end));
      await master.waitForLog(new RegExp(`slave 127.0.0.1:${s.socket.localPort} caught up at ${end}`));
      // Three saves at once (two records each) travel in one batch.
      const t0 = Date.now();
      await Promise.all([0, 1, 2].map(() => writePeer(rpc, written++)));
      // Wait for all six records, then count the frames they came in: one, if they were batched.
      await waitFor(() => s.records(SMALL_BLOCK).length >= 6, {
        what: () => `the six records of the three saves (${s.records(SMALL_BLOCK).length} so far)`,
        timeoutMs: 5000,
      });
      const waited = Date.now() - t0;
      assert.equal(s.frames.length, 1);
      assert.equal(s.batches()[0].messages.length, 6);
      assert.ok(waited < 2500, `first live batch after ${waited} ms`);
      // One fan-out save of 1 + 1200 records: a full batch of 1000 at once, then the rest.
      const members = Array.from({ length: 1200 }, (_, i) => 50_000 + i);
      await rpc.savePeerGroupMessage({
        appId: 7,
        members,
        deviceId: 1,
        cmd: 8,
        raw: imBody(1n, 2n, 'fan-out'),
      });
      await waitFor(() => s.records(SMALL_BLOCK).length >= 6 + 1201, {
        what: 'the fan-out batches',
        timeoutMs: 5000,
      });
      assert.deepEqual(
        s.batches().map((b) => b.messages.length),
        [6, 1000, 201],
      );
      await waitIdentical(masterDir, slaveDir);
    } finally {
      s.close();
    }
  });

  it('with durability=interval (records sent before their fsync) the slave follows across blocks too', async () => {
    const mDir = tempDir('ims-interval-m-');
    const sDir = tempDir('ims-interval-s-');
    dirs.push(mDir, sDir);
    const m = await start({ dataDir: mDir, config: { ...config, durability: 'interval' }, http: false });
    const sl = await start({ dataDir: sDir, masterAddress: m.syncAddress, config, http: false });
    const rpc = await client(m);
    for (let i = 0; i < 400; i++) await writePeer(rpc, i, 3000);
    await waitIdentical(mDir, sDir);
    assert.ok(blockNames(sDir).length >= 2);
    await sl.stop();
    await m.stop();
  });
});
