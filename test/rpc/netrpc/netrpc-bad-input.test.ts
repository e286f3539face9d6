import assert from 'node:assert/strict';
import * as net from 'node:net';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Cmd } from '../../../src/format/constants.js';
import { GoBasic, GobStreamEncoder } from '../../../src/rpc/gob/gob.js';
import { CONNECTED } from '../../../src/rpc/netrpc/http-connect.js';
import { CONNECT_REQUEST, type NetrpcClient } from '../../../src/rpc/netrpc/netrpc-client.js';
import { removeDir } from '../../support/fixtures.js';
import { imBody } from '../../support/rpc-client.js';
import { startServer, type ServerProcess } from '../../support/server-process.js';
import { waitFor } from '../../support/wait.js';
import { sendBad } from '../go-transport.js';
import { RawNetrpc, asRecorded, callPieces, endOfValues, loadWire, netrpcClient } from './support.js';

const wire = loadWire();
/** Go's first call (a SavePeerMessage for app 7, uid 10002), header and argument. */
const firstCall = callPieces(wire.clientGob)[0];
/** Its header alone (the Request type definition and the header value). */
const firstHeader = firstCall.subarray(0, endOfValues(firstCall, 1));
const latin1 = (s: string) => Buffer.from(s, 'latin1');
const afterConnect = (gob: Buffer) => Buffer.concat([CONNECT_REQUEST, gob]);

const MAX_FRAME = 65536;

interface Case {
  what: string;
  bytes: Buffer;
  /** Everything the server sends before it closes. */
  answer: Buffer | RegExp;
  log: RegExp;
}

const cases: Case[] = [
  {
    what: 'GET on the RPC path',
    bytes: latin1('GET /_goRPC_ HTTP/1.0\n\n'),
    answer: latin1(
      'HTTP/1.0 405 Method Not Allowed\r\nContent-Type: text/plain; charset=utf-8\r\n' +
        'Content-Length: 17\r\nConnection: close\r\n\r\n405 must CONNECT\n',
    ),
    log: /"GET \/_goRPC_ HTTP\/1\.0" is not a CONNECT; answered 405/,
  },
  {
    what: 'CONNECT to another path',
    bytes: latin1('CONNECT /debug/rpc HTTP/1.0\n\n'),
    answer: /^HTTP\/1\.0 404 Not Found\r\n[^]*\r\n\r\n404 page not found\n$/,
    log: /is not for \/_goRPC_; answered 404/,
  },
  {
    what: 'not HTTP',
    bytes: latin1('\u0000\u0007garbage\n\n'),
    answer: /^HTTP\/1\.1 400 Bad Request\r\n[^]*\r\n\r\n400 Bad Request$/,
    log: /not an HTTP request: .*; answered 400/,
  },
  {
    what: 'gob garbage after the handshake',
    bytes: afterConnect(latin1('\u0007garbage')),
    answer: CONNECTED,
    log: /bad gob data/,
  },
  {
    what: 'a header that is not a net/rpc Request',
    bytes: afterConnect(new GobStreamEncoder().encode(GoBasic.string, 'RPCStorage.Ping')),
    answer: CONNECTED,
    log: /rpc: server cannot decode request: gob: type mismatch in decoder: want struct type rpc\.Request; got non-struct/,
  },
  {
    what: 'a gob message that lies about its length',
    bytes: afterConnect(Buffer.concat([Buffer.from([firstCall[0] - 1]), firstCall.subarray(1)])),
    answer: CONNECTED,
    log: /bad gob data/,
  },
  {
    what: 'a valid header, then an argument that is not gob',
    bytes: afterConnect(Buffer.concat([firstHeader, Buffer.from([0x05, 0xff, 0x83, 0x03, 0x09, 0x09])])),
    answer: CONNECTED,
    log: /bad gob data/,
  },
];

describe('bad input on the netrpc port', () => {
  let server: ServerProcess;
  let go: NetrpcClient;

  before(async () => {
    server = await startServer({
      config: {
        netrpc_listen: '127.0.0.1:0',
        max_frame_bytes: MAX_FRAME,
        max_pending_bytes: 2 * MAX_FRAME,
        incomplete_frame_timeout_ms: 1500,
      },
      http: false,
    });
    // A well-behaved connection opened first must carry on through all of it.
    go = await netrpcClient(server);
  });
  after(async () => {
    go?.close();
    await server?.stop();
    if (server) removeDir(path.dirname(server.dataDir));
  });

  const stillServes = async (what: string) => {
    assert.equal(await go.call('Ping', 1), 0n);
    await go.call('SavePeerMessage', { AppID: 1, Uid: 2, DeviceID: 3, Cmd: Cmd.IM, Raw: imBody(3, 2, what) });
  };

  for (const c of cases) {
    it(`${c.what}: answered as Go would, connection closed with a log line, others carry on`, async () => {
      const { received, localPort } = await sendBad(server.ports.netrpc, c.bytes);
      if (c.answer instanceof RegExp) assert.match(received.toString('latin1'), c.answer);
      else assert.equal(received.toString('latin1'), c.answer.toString('latin1'));
      const line = await server.waitForLog(
        new RegExp(`netrpc 127\\.0\\.0\\.1:${localPort}: .*connection closed`),
        5000,
      );
      assert.match(line, c.log);
      await stillServes(c.what);
    });
  }

  it('nothing of a refused save was stored', async () => {
    const sync = await go.call('SyncMessage', { AppID: 7, Uid: 10002, DeviceID: 0, LastMsgID: 0 });
    assert.deepEqual(asRecorded('SyncMessage', sync), { Messages: [], LastMsgID: 0, HasMore: false });
  });

  it('a gob message over max_frame_bytes closes the connection as soon as its length is read', async () => {
    // The length prefix alone: 0xfd then 3 bytes (100000), and nothing of the message.
    const { received, localPort } = await sendBad(
      server.ports.netrpc,
      afterConnect(Buffer.from([0xfd, 0x01, 0x86, 0xa0])),
    );
    assert.equal(received.toString('latin1'), CONNECTED.toString('latin1'));
    await server.waitForLog(
      new RegExp(
        `netrpc connection from 127\\.0\\.0\\.1:${localPort} closed: it announced a gob message of 100000 bytes; max_frame_bytes is ${MAX_FRAME}`,
      ),
      5000,
    );
    await stillServes('frame');
  });

  it('an unfinished gob message that stops moving is dropped after incomplete_frame_timeout_ms', async () => {
    const raw = await RawNetrpc.open(server.ports.netrpc);
    const localPort = raw.socket.localPort!;
    raw.socket.write(Buffer.from([50, 1, 2, 3]));
    await waitFor(() => raw.closed, { what: 'the stalled connection closed', timeoutMs: 5000 });
    assert.equal(raw.received.length, 0);
    await server.waitForLog(
      new RegExp(`netrpc connection from 127\\.0\\.0\\.1:${localPort} closed: its unfinished gob message`),
      5000,
    );
  });

  it('unfinished messages of all connections stay under max_pending_bytes: the largest holders go', async () => {
    const holders = await Promise.all([0, 1, 2].map(() => RawNetrpc.open(server.ports.netrpc)));
    try {
      // Each starts a message just under max_frame_bytes; three of them pass max_pending_bytes (2 frames).
      const announce = Buffer.from([0xfd, 0x00, 0xff, 0x00]); // 65280 bytes
      for (const h of holders) h.socket.write(Buffer.concat([announce, Buffer.alloc(60000)]));
      await waitFor(() => holders.some((h) => h.closed), { what: 'a holder dropped', timeoutMs: 5000 });
      await server.waitForLog(
        /netrpc connection from 127\.0\.0\.1:\d+ closed: its unfinished frame \(\d+ bytes\) is the largest while unfinished frames hold \d+ bytes, over max_pending_bytes=131072/,
      );
      assert.ok(
        holders.some((h) => !h.closed),
        'only as many dropped as needed',
      );
      await stillServes('budget');
    } finally {
      for (const h of holders) h.close();
    }
  });
});

describe('max_connections on the netrpc port', () => {
  let server: ServerProcess;
  before(async () => {
    server = await startServer({ config: { netrpc_listen: '127.0.0.1:0', max_connections: 2 }, http: false });
  });
  after(async () => {
    await server?.stop();
    if (server) removeDir(path.dirname(server.dataDir));
  });

  it('refuses connections beyond max_connections with a log line, and serves again below it', async () => {
    const open = [await netrpcClient(server), await netrpcClient(server)];
    const extra = net.connect({ host: '127.0.0.1', port: server.ports.netrpc });
    extra.on('error', () => {});
    let closed = false;
    extra.on('close', () => (closed = true));
    await waitFor(() => closed, { what: 'the third netrpc connection refused' });
    await server.waitForLog(/netrpc connection from 127\.0\.0\.1:\d+ refused: max_connections=2 reached/);
    assert.equal(await open[0].call('Ping', 1), 0n);
    open[1].close();
    await waitFor(
      async () => {
        try {
          const c = await netrpcClient(server);
          const ok = (await c.call('Ping', 1)) === 0n;
          c.close();
          return ok;
        } catch {
          return false;
        }
      },
      { what: 'a new connection served once one went' },
    );
    open[0].close();
  });
});
