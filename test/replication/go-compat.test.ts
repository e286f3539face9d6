import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Cmd } from '../../src/format/constants.js';
import {
  SYNC_FLAG_ACKNOWLEDGED_END,
  SYNC_FLAG_IMS_EXTENSIONS,
  splitFrames,
} from '../../src/format/sync-frames.js';
import { copyFixtureDir, fixturePath, removeDir, tempDir } from '../support/fixtures.js';
import { startServer, type ServerProcess } from '../support/server-process.js';
import { holdsFor, waitFor } from '../support/wait.js';
import { RawSyncSocket, httpJson } from './support.js';

const wire = (name: string) => fs.readFileSync(fixturePath('wire', name));

/**
 * A fake Go master: takes the SYNC_BEGIN, then replies with the captured stream, as Go does, and never
 * answers anything else. Every byte the slave sends is kept (`all`).
 */
function fakeGoMaster(expectBegin: Buffer, stream: Buffer) {
  const received: Buffer[] = [];
  const all: Buffer[] = [];
  const server = net.createServer((socket) => {
    let got = Buffer.alloc(0);
    socket.on('error', () => undefined);
    socket.on('data', (chunk) => {
      all.push(chunk);
      got = Buffer.concat([got, chunk]);
      if (got.length >= expectBegin.length && received.length === 0) {
        received.push(got.subarray(0, expectBegin.length));
        socket.write(stream);
      }
    });
  });
  return {
    received,
    receivedBytes: () => all.reduce((n, b) => n + b.length, 0),
    listen: () =>
      new Promise<number>((r) =>
        server.listen(0, '127.0.0.1', () => r((server.address() as net.AddressInfo).port)),
      ),
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

describe('wire compatibility with the Go 2.0 master and slave', () => {
  const servers: ServerProcess[] = [];
  const dirs: string[] = [];
  after(async () => {
    for (const s of servers) await s.kill9().catch(() => undefined);
    for (const s of servers) removeDir(path.dirname(s.configPath));
    for (const d of dirs) removeDir(d);
  });
  let clean: Buffer;
  before(() => {
    clean = fs.readFileSync(fixturePath('clean', 'message_0'));
  });

  for (const cursor of [32, 266353]) {
    it(`our slave fed the Go master's bytes from cursor ${cursor} ends with a message_0 identical to Go's`, async () => {
      const begin = wire(`sync_begin_cursor${cursor}.bin`);
      const fake = fakeGoMaster(begin, wire(`sync_stream_cursor${cursor}.bin`));
      const port = await fake.listen();
      const dataDir = tempDir('ims-goslave-');
      dirs.push(dataDir);
      if (cursor > 32) fs.writeFileSync(path.join(dataDir, 'message_0'), clean.subarray(0, cursor));
      const slave = await startServer({ dataDir, masterAddress: `127.0.0.1:${port}` });
      servers.push(slave);
      try {
        await waitFor(() => fs.readFileSync(path.join(dataDir, 'message_0')).equals(clean), {
          what: 'message_0 equal to the fixture',
          intervalMs: 100,
        });
        assert.equal(fake.received.length, 1);
        // The SYNC_BEGIN is the Go slave's byte for byte but for the flag byte, where an ims slave asks
        // for the extensions and the acknowledged end (Go's master reads the flag and ignores it).
        const expected = Buffer.from(begin);
        expected[10] = SYNC_FLAG_IMS_EXTENSIONS | SYNC_FLAG_ACKNOWLEDGED_END;
        assert.deepEqual(fake.received[0], expected);
        // A Go master never says hello, so the slave sends nothing more: no acknowledgement reaches
        // Go (it never reads them). Absence is asserted over a period.
        await holdsFor(() => fake.receivedBytes() === begin.length, {
          what: () => `only the ${begin.length}-byte SYNC_BEGIN sent (now ${fake.receivedBytes()} bytes)`,
          periodMs: 700,
        });
        const status = (await httpJson(`${slave.httpBase}/summary`)) as {
          replication: { slave: { acknowledging: boolean; masterEpoch: number | null } };
        };
        assert.equal(status.replication.slave.acknowledging, false);
        assert.equal(status.replication.slave.masterEpoch, null);
        assert.ok(!slave.logText().includes('ERROR'), slave.logText());
      } finally {
        await slave.stop();
        await fake.close();
      }
    });
  }

  it("our master serving clean/ sends the Go master's stream byte for byte (same batches, ids and messages)", async () => {
    const dataDir = copyFixtureDir('clean');
    dirs.push(dataDir);
    const master = await startServer({ dataDir });
    servers.push(master);
    for (const cursor of [32, 266353]) {
      const expected = wire(`sync_stream_cursor${cursor}.bin`);
      const expectedFrames = splitFrames(expected).frames.length;
      const s = await RawSyncSocket.connect(master.ports.sync);
      s.send(wire(`sync_begin_cursor${cursor}.bin`));
      await waitFor(() => s.frames.length >= expectedFrames, { what: 'the whole backlog', timeoutMs: 10000 });
      // Nothing more is sent while nothing is written: no heartbeat either (an ims slave would get one
      // every sync_heartbeat_ms, 500). Absence has no event to wait for, so a period is asserted.
      await holdsFor(() => s.frames.length === expectedFrames, {
        what: () => `exactly ${expectedFrames} frames (now ${s.frames.length})`,
        periodMs: 700,
      });
      assert.equal(s.problem, null);
      // A Go slave (flag clear) gets Go's frames only: no hello, no heartbeat.
      assert.ok(s.frames.every((f) => f.cmd === Cmd.STORAGE_SYNC_MESSAGE_BATCH));
      const got = Buffer.concat(
        s.frames.map((f) => {
          const h = Buffer.alloc(12);
          h.writeInt32BE(f.length, 0);
          h.writeInt32BE(f.seq, 4);
          h[8] = f.cmd;
          h[9] = f.version;
          h[10] = f.flag;
          return Buffer.concat([h, f.body]);
        }),
      );
      assert.deepEqual(got, expected);
      s.close();
    }
    await master.stop();
  });
});
