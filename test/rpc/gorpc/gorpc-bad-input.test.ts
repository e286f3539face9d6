import assert from 'node:assert/strict';
import * as net from 'node:net';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { Cmd } from '../../../src/format/constants.js';
import type { GorpcClient } from '../../../src/rpc/gorpc/gorpc-client.js';
import { removeDir } from '../../support/fixtures.js';
import { imBody } from '../../support/rpc-client.js';
import { startServer, type ServerProcess } from '../../support/server-process.js';
import { waitFor } from '../../support/wait.js';
import { sendBad } from '../go-transport.js';
import { callPieces, gorpcClient, loadCaptures } from './support.js';

const plain = loadCaptures().find((c) => c.mode === 'plain')!;
/** The first call Go's client made (handshake byte 0 included). */
const firstCall = Buffer.concat([plain.c2s.subarray(0, 1), callPieces(plain)[0]]);
const replaced = (from: string, to: string) =>
  Buffer.from(firstCall.toString('latin1').replace(from, to), 'latin1');
/** The first call with its first message said to be one byte shorter than it is. */
const shortened = Buffer.from(firstCall);
shortened[1] -= 1;

const cases: { what: string; bytes: Buffer; log: RegExp }[] = [
  {
    what: 'garbage',
    bytes: Buffer.from('\u0000\u0007garbage', 'latin1'),
    log: /bad gob data/,
  },
  {
    what: 'an HTTP request (its first byte asks for deflate)',
    bytes: Buffer.from('GET / HTTP/1.1\r\n\r\n'),
    log: /not deflate data/,
  },
  {
    what: 'a "deflate" stream that is not deflate',
    bytes: Buffer.from('\u0001\u00ff\u00ff\u00ff\u00ff hello', 'latin1'),
    log: /not deflate data/,
  },
  {
    what: 'an unknown type name',
    bytes: replaced('*main.PeerMessage', '*main.EvilMessage'),
    log: /unknown type name "\*main\.EvilMessage"/,
  },
  { what: 'a gob message that lies about its length', bytes: shortened, log: /bad gob data/ },
  {
    what: 'an oversized message',
    bytes: Buffer.from([0, 0xfc, 0x10, 0x00, 0x00, 0x00, 1, 2, 3]),
    log: /it announced a gob message of 268435456 bytes; max_frame_bytes is \d+/,
  },
  {
    what: 'an unknown method',
    bytes: replaced('.SavePeerMessage', '.DropPeerMessage'),
    log: /unknown method "\.DropPeerMessage"/,
  },
  {
    what: 'an oversized message inside a valid deflate stream',
    bytes: Buffer.concat([
      Buffer.from([1]),
      zlib.deflateRawSync(
        Buffer.concat([Buffer.from([0xfc, 0x04, 0x00, 0x00, 0x00]), Buffer.alloc(8 << 20)]),
      ),
    ]),
    log: /it announced a gob message of 67108864 bytes; max_frame_bytes is \d+/,
  },
];

describe('bad input on the gorpc port', () => {
  let server: ServerProcess;
  let go: GorpcClient;

  before(async () => {
    server = await startServer({ config: { gorpc_listen: '127.0.0.1:0' }, http: false });
    // A well-behaved connection opened first must carry on through all of it.
    go = await gorpcClient(server, true);
  });
  after(async () => {
    go?.close();
    await server?.stop();
    if (server) removeDir(path.dirname(server.dataDir));
  });

  for (const c of cases) {
    it(`${c.what}: connection closed with a log line, nothing written, others carry on`, async () => {
      const { received, localPort } = await sendBad(server.ports.gorpc, c.bytes);
      assert.equal(received.length, 0, 'nothing written to the bad connection');
      const line = await server.waitForLog(
        new RegExp(`gorpc (connection from )?127\\.0\\.0\\.1:${localPort}:? .*closed`),
        5000,
      );
      assert.match(line, c.log);
      const id = await go.call('SavePeerMessage', {
        AppID: 1,
        Uid: 2,
        DeviceID: 3,
        Cmd: Cmd.IM,
        Raw: imBody(3, 2, c.what),
      });
      assert.equal(typeof id, 'bigint');
    });
  }

  it('a client that never sends its handshake byte is not answered (and the server carries on)', async () => {
    const s = net.connect(server.ports.gorpc, '127.0.0.1');
    await new Promise<void>((resolve) => s.once('connect', resolve));
    let received = 0;
    s.on('data', (d: Buffer) => (received += d.length));
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(received, 0);
    s.destroy();
    assert.ok(!server.exited);
  });
});

/** A raw connection to the gorpc port: what it received and whether the server closed it. */
async function rawGorpc(port: number, first: Buffer) {
  const socket = net.connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const state = { socket, received: 0, closed: false, localPort: socket.localPort! };
  socket.on('data', (d: Buffer) => (state.received += d.length));
  socket.on('error', () => {});
  socket.on('close', () => (state.closed = true));
  socket.write(first);
  return state;
}

const syncFlushed = (b: Buffer) => zlib.deflateRawSync(b, { finishFlush: zlib.constants.Z_SYNC_FLUSH });

describe('the input bounds on the gorpc port (max_frame_bytes, max_pending_bytes, incomplete_frame_timeout_ms)', () => {
  const MAX_FRAME = 65536;
  let server: ServerProcess;
  let go: GorpcClient;

  before(async () => {
    server = await startServer({
      config: {
        gorpc_listen: '127.0.0.1:0',
        max_frame_bytes: MAX_FRAME,
        max_pending_bytes: 2 * MAX_FRAME,
        incomplete_frame_timeout_ms: 1500,
      },
      http: false,
    });
    go = await gorpcClient(server, true);
  });
  after(async () => {
    go?.close();
    await server?.stop();
    if (server) removeDir(path.dirname(server.dataDir));
  });

  const stillServes = async (what: string) => {
    const id = await go.call('SavePeerMessage', {
      AppID: 1,
      Uid: 2,
      DeviceID: 3,
      Cmd: Cmd.IM,
      Raw: imBody(3, 2, what),
    });
    assert.equal(typeof id, 'bigint');
  };

  for (const deflate of [false, true]) {
    const mode = deflate ? 'deflate' : 'plain';
    const start = (gob: Buffer) =>
      Buffer.concat([Buffer.from([deflate ? 1 : 0]), deflate ? syncFlushed(gob) : gob]);

    it(`${mode}: a gob message over max_frame_bytes is refused as soon as its length is read`, async () => {
      const c = await rawGorpc(server.ports.gorpc, start(Buffer.from([0xfd, 0x01, 0x86, 0xa0])));
      await waitFor(() => c.closed, { what: 'the connection closed', timeoutMs: 5000 });
      assert.equal(c.received, 0);
      await server.waitForLog(
        new RegExp(
          `gorpc connection from 127\\.0\\.0\\.1:${c.localPort} closed: it announced a gob message of 100000 bytes; max_frame_bytes is ${MAX_FRAME}`,
        ),
        5000,
      );
      await stillServes(`frame ${mode}`);
    });

    it(`${mode}: an unfinished gob message that stops moving is dropped after incomplete_frame_timeout_ms`, async () => {
      const c = await rawGorpc(server.ports.gorpc, start(Buffer.from([50, 1, 2, 3])));
      await waitFor(() => c.closed, { what: 'the stalled connection closed', timeoutMs: 5000 });
      assert.equal(c.received, 0);
      await server.waitForLog(
        new RegExp(
          `gorpc connection from 127\\.0\\.0\\.1:${c.localPort} closed: its unfinished gob message \\(4 bytes held\\) received nothing for 1500 ms`,
        ),
        5000,
      );
      await stillServes(`stall ${mode}`);
    });

    it(`${mode}: unfinished messages of all connections stay under max_pending_bytes`, async () => {
      // Each starts a message just under max_frame_bytes; three of them pass max_pending_bytes (2 frames).
      const partial = start(Buffer.concat([Buffer.from([0xfd, 0x00, 0xff, 0x00]), Buffer.alloc(60000)]));
      const holders = await Promise.all([0, 1, 2].map(() => rawGorpc(server.ports.gorpc, partial)));
      try {
        await waitFor(() => holders.some((h) => h.closed), { what: 'a holder dropped', timeoutMs: 5000 });
        const dropped = holders.find((h) => h.closed)!;
        await server.waitForLog(
          new RegExp(
            `gorpc connection from 127\\.0\\.0\\.1:${dropped.localPort} closed: its unfinished frame \\(\\d+ bytes\\) is the largest while unfinished frames hold \\d+ bytes, over max_pending_bytes=131072`,
          ),
        );
        assert.ok(
          holders.some((h) => !h.closed),
          'only as many dropped as needed',
        );
        await stillServes(`budget ${mode}`);
      } finally {
        for (const h of holders) h.socket.destroy();
      }
    });
  }
});
