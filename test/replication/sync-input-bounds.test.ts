/**
 * The sync port's frames under the same input bounds as the RPC listeners: a slave (or anyone) that
 * starts a frame and stops is dropped after incomplete_frame_timeout_ms, counted with the other drops;
 * and a slave whose master starts a frame and stops ends the link instead of waiting forever.
 */
import assert from 'node:assert/strict';
import * as net from 'node:net';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { encodeExtendedSyncBegin, encodeFrame } from '../../src/format/sync-frames.js';
import { Cmd } from '../../src/format/constants.js';
import { removeDir } from '../support/fixtures.js';
import { startServer, type ServerProcess } from '../support/server-process.js';
import { waitFor } from '../support/wait.js';

const STALL_MS = 1500;

async function metric(server: ServerProcess, re: RegExp): Promise<number> {
  const text = await (await fetch(`${server.httpBase}/metrics`)).text();
  const m = re.exec(text);
  return m ? Number(m[1]) : 0;
}

describe('input bounds on the sync port', () => {
  const servers: ServerProcess[] = [];
  after(async () => {
    for (const s of servers) {
      await s.stop().catch(() => undefined);
      removeDir(path.dirname(s.dataDir));
    }
  });

  it('a hostile slave that starts a frame and stops is dropped after incomplete_frame_timeout_ms', async () => {
    const master = await startServer({ config: { incomplete_frame_timeout_ms: STALL_MS } });
    servers.push(master);
    const stalledRe = /ims_input_dropped_total\{reason="stalled"\} (\d+)/;
    const before = await metric(master, stalledRe);
    for (const [what, bytes] of [
      ['half a MSG_STORAGE_SYNC_BEGIN', encodeExtendedSyncBegin(0).subarray(0, 7)],
      [
        'a whole MSG_STORAGE_SYNC_BEGIN, then half an acknowledgement',
        Buffer.concat([
          encodeExtendedSyncBegin(0),
          encodeFrame(2, Cmd.STORAGE_SYNC_ACK, Buffer.alloc(16)).subarray(0, 10),
        ]),
      ],
    ] as const) {
      const s = net.connect(master.ports.sync, '127.0.0.1');
      s.on('error', () => undefined);
      s.on('data', () => undefined);
      await new Promise<void>((resolve) => s.once('connect', resolve));
      const localPort = s.localPort!;
      let closed = false;
      s.on('close', () => (closed = true));
      const started = Date.now();
      s.write(bytes);
      await waitFor(() => closed, { what: `the connection that sent ${what} closed`, timeoutMs: 8000 });
      // Well before the 10 s handshake timeout; not before the stall timeout.
      assert.ok(Date.now() - started >= STALL_MS - 50, `${what}: closed after ${Date.now() - started} ms`);
      await master.waitForLog(
        new RegExp(
          `sync connection from 127\\.0\\.0\\.1:${localPort} closed: its unfinished frame \\(\\d+ bytes held\\) received nothing for ${STALL_MS} ms`,
        ),
        5000,
      );
    }
    await waitFor(async () => (await metric(master, stalledRe)) === before + 2, {
      what: 'both counted in ims_input_dropped_total{reason="stalled"}',
    });
  });

  it('a slave whose master starts a frame and stops ends the link', async () => {
    // A "master" that accepts the slave and sends the first 10 bytes of a 100-byte frame.
    const fake = net.createServer((socket) => {
      socket.on('error', () => undefined);
      socket.once('data', () =>
        socket.write(encodeFrame(1, Cmd.STORAGE_SYNC_BEGIN, Buffer.alloc(100)).subarray(0, 10)),
      );
    });
    await new Promise<void>((resolve) => fake.listen(0, '127.0.0.1', resolve));
    try {
      const port = (fake.address() as net.AddressInfo).port;
      const slave = await startServer({
        masterAddress: `127.0.0.1:${port}`,
        config: { incomplete_frame_timeout_ms: STALL_MS },
        http: false,
      });
      servers.push(slave);
      const line = await slave.waitForLog(
        /link to master 127\.0\.0\.1:\d+: its unfinished frame \(10 bytes held\) received nothing for 1500 ms/,
        10_000,
      );
      assert.ok(line);
      assert.ok(!slave.exited);
    } finally {
      fake.close();
    }
  });
});
