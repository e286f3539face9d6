/** Go replication bugs 17-22 (notes/go-ims-bugs.md), each shown fixed, and garbage on the sync port. */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { ImsClient } from '../../src/client/index.js';
import { ImsConfig } from '../../src/config/ims-config.js';
import { BLOCK_SIZE, Cmd, MAX_SYNC_FRAME_BODY } from '../../src/format/constants.js';
import { decodeRecord, recordSize } from '../../src/format/record.js';
import {
  MAX_BATCH_BYTES,
  decodeBatchBody,
  encodeBatchFrame,
  encodeFrame,
  encodeExtendedSyncBegin,
  encodeSyncBegin,
  splitFrames,
} from '../../src/format/sync-frames.js';
import { SyncSlave, batchRecordIds } from '../../src/replication/sync-slave.js';
import { MessageStore } from '../../src/storage/index.js';
import { StorageService } from '../../src/storage/storage.service.js';
import { fixturePath, removeDir, tempDir } from '../support/fixtures.js';
import { startServer, type ServerProcess } from '../support/server-process.js';
import { APP, USERS, imBody } from '../support/workload.js';
import {
  RawSyncSocket,
  SMALL_BLOCK,
  assertNoZeroPadding,
  blockNames,
  httpJson,
  waitIdentical,
  writeHistory,
  writePeer,
} from './support.js';
import { waitFor } from '../support/wait.js';

const config = { block_size: SMALL_BLOCK };

/** The Go master's backlog from cursor 32, re-cut into batches of `per` messages (ids unchanged). */
function goStreamInBatches(per: number): Buffer[] {
  const frames = splitFrames(fs.readFileSync(fixturePath('wire', 'sync_stream_cursor32.bin'))).frames;
  const out: Buffer[] = [];
  let seq = 1;
  for (const f of frames) {
    const d = decodeBatchBody(f.body);
    assert.ok(d.ok);
    const ids = batchRecordIds(d.value.firstId, d.value.messages, BLOCK_SIZE);
    for (let i = 0; i < ids.length; i += per) {
      const msgs = d.value.messages.slice(i, i + per);
      out.push(encodeBatchFrame(seq++, ids[i], ids[i + msgs.length - 1], msgs));
    }
  }
  return out;
}
const quiet = { log: () => undefined, warn: () => undefined, error: () => undefined };

describe('Go replication bugs 17-22 are fixed', () => {
  const servers: ServerProcess[] = [];
  const dirs: string[] = [];
  const clients: ImsClient[] = [];
  after(async () => {
    for (const c of clients) await c.close().catch(() => undefined);
    for (const s of servers) await s.kill9().catch(() => undefined);
    for (const s of servers) removeDir(path.dirname(s.configPath));
    for (const d of dirs) removeDir(d);
  });
  const dir = (prefix: string) => {
    const d = tempDir(prefix);
    dirs.push(d);
    return d;
  };
  const start = async (opts: Parameters<typeof startServer>[0]) => {
    const s = await startServer(opts);
    servers.push(s);
    return s;
  };

  const masterDir = dir('ims-bugs-master-');
  let master: ServerProcess;
  let rpc: ImsClient;
  let written = 0;

  it('bug 17: a slave that never reads does not slow writers or block another slave; it is dropped and logged', async () => {
    await writeHistory(masterDir, 7000, 5, 1500);
    master = await start({ dataDir: masterDir, config: { ...config, sync_stall_timeout_ms: 5000 } });
    rpc = new ImsClient({ host: '127.0.0.1', port: master.ports.rpc });
    await rpc.connect();
    clients.push(rpc);
    const baseline: number[] = [];
    for (let i = 0; i < 20; i++) {
      const t = Date.now();
      await writePeer(rpc, written++);
      baseline.push(Date.now() - t);
    }

    const stalled = await RawSyncSocket.connect(master.ports.sync, false);
    stalled.send(encodeSyncBegin(32));
    await master.waitForLog(/began sync at cursor 32/);
    const slaveDir = dir('ims-bugs-slave-');
    const slave = await start({ dataDir: slaveDir, masterAddress: master.syncAddress, config });
    const latencies: number[] = [];
    for (let i = 0; i < 60; i++) {
      const t = Date.now();
      await writePeer(rpc, written++);
      latencies.push(Date.now() - t);
    }
    await waitIdentical(masterDir, slaveDir);
    assert.ok(
      !master.logText().includes('stalled'),
      'the real slave caught up while the stalled one was still connected',
    );
    const max = Math.max(...latencies);
    assert.ok(
      max < 1000,
      `write latency with a stalled slave: max ${max} ms (baseline max ${Math.max(...baseline)} ms)`,
    );
    await slave.stop();
    const line = await master.waitForLog(/stalled: read nothing for 5000 ms/, 15000);
    assert.match(line, /dropped, it resumes from its cursor/);
    await waitFor(
      async () => {
        const r = (await httpJson(`${master.httpBase}/summary`)).replication as {
          master: { slaves: unknown[] };
        };
        return r.master.slaves.length === 0;
      },
      { what: 'no slave left in /summary' },
    );
    stalled.close();
  });

  it('garbage on the sync port is refused with a log line while the real slave keeps being served', async () => {
    const slaveDir = dir('ims-bugs-slave2-');
    const slave = await start({ dataDir: slaveDir, masterAddress: master.syncAddress, config });
    const huge = Buffer.alloc(12);
    huge.writeInt32BE(0x7fffffff, 0);
    huge[8] = Cmd.STORAGE_SYNC_BEGIN;
    const cases: [Buffer, RegExp][] = [
      [
        randomBytes(64).fill(0x41, 8, 9),
        /refused: expected MSG_STORAGE_SYNC_BEGIN \(220\), got cmd 65|refused: frame length/,
      ],
      [huge, /refused: frame length 2147483647 is over the limit of 8 bytes/],
      [
        encodeFrame(1, Cmd.STORAGE_SYNC_MESSAGE_BATCH, Buffer.alloc(8)),
        /refused: expected MSG_STORAGE_SYNC_BEGIN \(220\), got MSG_STORAGE_SYNC_MESSAGE_BATCH/,
      ],
      [
        encodeFrame(1, Cmd.STORAGE_SYNC_BEGIN, Buffer.alloc(4)),
        /refused: MSG_STORAGE_SYNC_BEGIN body length is 4, expected 8/,
      ],
    ];
    for (const [bytes, expected] of cases) {
      const s = await RawSyncSocket.connect(master.ports.sync);
      const logged = master.output.length;
      s.send(bytes);
      await waitFor(() => s.closed, { what: 'the master to close the garbage connection', timeoutMs: 5000 });
      assert.equal(s.frames.length, 0);
      const lines = master.output.slice(logged).join('\n');
      assert.match(lines, expected);
      // Writes in between still reach the real slave.
      for (let i = 0; i < 10; i++) await writePeer(rpc, written++);
    }
    await waitIdentical(masterDir, slaveDir);
    await slave.stop();
  });

  it('bug 22: a slave whose log is ahead of the master (diverged) is refused, and it writes nothing', async () => {
    // A Go slave (no extensions) past the end of the log is refused outright.
    const goSlave = await RawSyncSocket.connect(master.ports.sync);
    goSlave.send(encodeSyncBegin(50 * SMALL_BLOCK));
    await waitFor(() => goSlave.closed, { what: 'the Go slave refused' });
    assert.equal(goSlave.frames.length, 0, 'nothing sent to it');
    // An ims slave whose records from before epochs run past the master's: it is told the master's
    // history, cannot prove those records are the master's, and refuses to follow (never cuts them).
    const aheadDir = dir('ims-bugs-ahead-');
    await writeHistory(aheadDir, 9000, 9, 1500);
    const before = blockNames(aheadDir).map((n) => fs.readFileSync(path.join(aheadDir, n)));
    const slave = await start({ dataDir: aheadDir, masterAddress: master.syncAddress, config });
    await master.waitForLog(/past the end of this log .*diverged/);
    await slave.waitForLog(/holds records from before epochs past \d+.*refusing its stream/);
    await slave.waitForLog(/reconnecting to master/);
    await slave.stop();
    assert.deepEqual(
      blockNames(aheadDir).map((n) => fs.readFileSync(path.join(aheadDir, n))),
      before,
    );
  });

  it('bug 18: a gap in what the master sends is never padded with zeroes; the slave reconnects from its cursor', async () => {
    // A fake master that leaves out the first batch: it sends the second batch of the Go stream.
    const second = goStreamInBatches(1000)[1];
    const begins: Buffer[] = [];
    const fake = net.createServer((socket) => {
      socket.on('error', () => undefined);
      socket.once('data', (chunk) => {
        begins.push(chunk);
        socket.write(second);
      });
    });
    await new Promise<void>((r) => fake.listen(0, '127.0.0.1', () => r()));
    const slaveDir = dir('ims-bugs-gap-');
    const slave = await start({
      dataDir: slaveDir,
      masterAddress: `127.0.0.1:${(fake.address() as net.AddressInfo).port}`,
    });
    try {
      const line = await slave.waitForLog(/gap: the master sent record \d+ but our log ends at 32/);
      assert.match(line, /not padding it/);
      await waitFor(() => begins.length >= 2, {
        what: 'a second SYNC_BEGIN from the same cursor',
        timeoutMs: 5000,
      });
      for (const b of begins) assert.deepEqual(b, encodeExtendedSyncBegin(32));
      assert.equal(fs.statSync(path.join(slaveDir, 'message_0')).size, 32, 'nothing was written');
    } finally {
      await slave.stop();
      await new Promise<void>((r) => fake.close(() => r()));
    }
  });

  it('bug 19: catch-up from deep in a block continues into a next block smaller than that offset', async () => {
    const mDir = dir('ims-bugs19-master-');
    const store = MessageStore.open({ root: mDir, blockSize: SMALL_BLOCK });
    let i = 0;
    while (store.files.writeBlock === 0) {
      store.savePeerMessage(
        APP,
        USERS[i % 4],
        1n,
        Cmd.IM,
        imBody(USERS[0], USERS[i % 4], `m${i} ${'z'.repeat(900)}`),
      );
      i++;
    }
    for (let k = 0; k < 3; k++)
      store.savePeerMessage(APP, USERS[1], 1n, Cmd.IM, imBody(USERS[0], USERS[1], `tail ${k}`));
    await store.close();
    const block0 = fs.readFileSync(path.join(mDir, 'message_0'));
    const block1Size = fs.statSync(path.join(mDir, 'message_1')).size;
    // The slave holds block 0 up to a record boundary deeper than all of block 1.
    let cut = 32;
    while (cut <= block1Size + 1000) {
      const r = decodeRecord(block0, cut);
      assert.equal(r.kind, 'ok');
      cut += (r as { size: number }).size;
    }
    assert.ok(cut > block1Size);
    const sDir = dir('ims-bugs19-slave-');
    fs.writeFileSync(path.join(sDir, 'message_0'), block0.subarray(0, cut));
    const m = await start({ dataDir: mDir, config, http: false });
    const slave = await start({ dataDir: sDir, masterAddress: m.syncAddress, config, http: false });
    await waitIdentical(mDir, sDir);
    assertNoZeroPadding(sDir, SMALL_BLOCK);
    await slave.stop();
    await m.stop();
  });

  it('bug 20: the slave makes each batch durable before it applies the next one', async () => {
    const stream = Buffer.concat(goStreamInBatches(700));
    const fake = net.createServer((socket) => {
      socket.on('error', () => undefined);
      socket.once('data', () => socket.write(stream));
    });
    await new Promise<void>((r) => fake.listen(0, '127.0.0.1', () => r()));
    const root = dir('ims-bugs20-');
    const cfg = Object.assign(new ImsConfig(), {
      storage_root: root,
      kefu_appid: 0n,
      block_size: BLOCK_SIZE,
    });
    const storage = new StorageService(cfg);
    storage.open();
    const seen: { id: number; durable: number }[] = [];
    const apply = storage.applyReplicatedRecords.bind(storage);
    storage.applyReplicatedRecords = (ids, msgs) => {
      for (const id of ids) seen.push({ id, durable: storage.store.files.durableId });
      return apply(ids, msgs);
    };
    const slave = new SyncSlave(
      storage,
      `127.0.0.1:${(fake.address() as net.AddressInfo).port}`,
      quiet,
      'test-slave',
    );
    try {
      slave.start();
      const clean = fs.statSync(fixturePath('clean', 'message_0')).size;
      await waitFor(() => storage.store.nextId === clean && storage.store.files.durableId === clean, {
        what: 'all records applied',
      });
      const batches = splitFrames(stream).frames.map((f) => {
        const d = decodeBatchBody(f.body);
        assert.ok(d.ok);
        return d.value;
      });
      assert.ok(batches.length >= 2);
      for (let b = 1; b < batches.length; b++) {
        const prev = batches[b - 1];
        const prevEnd = prev.lastId + recordSize(prev.messages.at(-1)!.body.length);
        const first = seen.find((s) => s.id === batches[b].firstId)!;
        assert.ok(
          first.durable >= prevEnd,
          `batch ${b} began at durable ${first.durable}, before ${prevEnd} was fsynced`,
        );
      }
      assert.equal(slave.status().lastAppliedId, batches.at(-1)!.lastId);
    } finally {
      await slave.stop();
      await new Promise<void>((r) => fake.close(() => r()));
      await storage.onApplicationShutdown();
    }
  });

  it('bug 21: batches of large messages stay far below the 32 MiB frame limit of Go slaves', async () => {
    const blockSize = 64 * 1024 * 1024;
    const mDir = dir('ims-bugs21-');
    const store = MessageStore.open({ root: mDir, blockSize });
    const content = 'w'.repeat(30000);
    for (let i = 0; i < 800; i++)
      store.savePeerMessage(APP, USERS[i % 5], 1n, Cmd.IM, imBody(USERS[0], USERS[i % 5], content));
    const end = store.nextId;
    await store.close();
    assert.ok(end > MAX_BATCH_BYTES + 4 * 1024 * 1024, 'more than one byte-capped batch of data');
    const m = await start({ dataDir: mDir, config: { block_size: blockSize }, http: false });
    const s = await RawSyncSocket.connect(m.ports.sync);
    s.send(encodeSyncBegin(32));
    await waitFor(
      () => {
        const b = s.batches().at(-1);
        return b !== undefined && b.lastId + recordSize(b.messages.at(-1)!.body.length) === end;
      },
      { what: 'the whole backlog', timeoutMs: 20000 },
    );
    assert.ok(s.frames.length >= 2, `${s.frames.length} frames`);
    for (const f of s.frames) {
      assert.ok(f.length <= MAX_BATCH_BYTES + 20 + 12 + 32768, `frame body ${f.length} bytes`);
      assert.ok(f.length < MAX_SYNC_FRAME_BODY);
    }
    assert.equal(s.records(blockSize).length, 1600);
    // Every record of the master's file, in order, at its id.
    s.close();
    await m.stop();
    const onDisk = fs.readFileSync(path.join(mDir, 'message_0'));
    let off = 32;
    let n = 0;
    for (const r of s.records(blockSize)) {
      assert.equal(r.id, off);
      const rec = decodeRecord(onDisk, off);
      assert.equal(rec.kind, 'ok');
      if (rec.kind !== 'ok') break;
      assert.equal(r.cmd, rec.message.cmd);
      assert.ok(r.body.equals(rec.message.body));
      off += rec.size;
      n++;
    }
    assert.equal(off, end);
    assert.equal(n, 1600);
  });
});
