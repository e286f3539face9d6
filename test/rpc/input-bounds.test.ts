import assert from 'node:assert/strict';
import * as net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { MAX_BODY_SIZE } from '../../src/format/constants.js';
import { DEFAULT_MAX_FRAME_BYTES } from '../../src/config/ims-config.js';
import { RawRpcClient, clientFor, imBody } from '../support/rpc-client.js';
import { scrape } from '../support/prometheus.js';
import { startServer, type ServerProcess } from '../support/server-process.js';
import { waitFor } from '../support/wait.js';

const MiB = 1024 * 1024;
const CHUNK = Buffer.alloc(MiB, 'a');

interface Holder {
  socket: net.Socket;
  sent: number;
  closed: boolean;
}

/**
 * Opens a raw connection to `port`, announces a frame of `announced` characters and sends `send` of them
 * (1 MiB at a time, honouring backpressure), then keeps the socket open. Stops early when the server closes it.
 */
async function holdFrame(port: number, announced: number, send: number): Promise<Holder> {
  const socket = net.connect({ host: '127.0.0.1', port });
  const h: Holder = { socket, sent: 0, closed: false };
  socket.on('error', () => {});
  socket.on('close', () => (h.closed = true));
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  socket.write(`${announced}#`);
  while (h.sent < send && !h.closed) {
    const n = Math.min(MiB, send - h.sent);
    const flushed = socket.write(n === MiB ? CHUNK : CHUNK.subarray(0, n));
    h.sent += n;
    if (!flushed)
      await new Promise<void>((resolve) => {
        const done = () => {
          socket.off('drain', done);
          socket.off('close', done);
          resolve();
        };
        socket.on('drain', done);
        socket.on('close', done);
      });
  }
  return h;
}

async function rss(server: ServerProcess): Promise<number> {
  return (await scrape(server.httpBase)).value('process_resident_memory_bytes')!;
}

async function servesAGoodClient(server: ServerProcess): Promise<void> {
  const client = clientFor(server);
  try {
    const r = await client.savePeerMessage({
      appId: 1,
      uid: 2,
      deviceId: 3,
      cmd: 4,
      raw: imBody(1, 2, 'still here'),
    });
    assert.ok(r.msgId > 0);
  } finally {
    await client.close();
  }
}

describe('bounded input on the RPC port', () => {
  let server: ServerProcess;
  before(async () => {
    // max_frame_bytes raised to 64 MiB so that 60 MB frames are legal and only the shared budget
    // (max_pending_bytes, default 256 MiB) stands between twenty of them and the heap.
    server = await startServer({
      config: { max_frame_bytes: 64 * MiB, incomplete_frame_timeout_ms: 20_000 },
    });
  });
  after(async () => {
    await server?.stop();
  });

  it('a 100 MB frame closes its connection at once with a log line; RSS stays put; a good client is served', async () => {
    const before = await rss(server);
    const h = await holdFrame(server.ports.rpc, 100_000_000, 100_000_000);
    await waitFor(() => h.closed, { what: 'the server to close the 100 MB connection' });
    assert.ok(h.sent < 100_000_000 || h.closed, 'the server did not wait for the whole frame');
    await server.waitForLog(
      /rpc connection from 127\.0\.0\.1:\d+ closed: it announced a frame of 100000000 bytes; max_frame_bytes is 67108864/,
    );
    const afterRss = await rss(server);
    assert.ok(afterRss - before < 64 * MiB, `RSS grew by ${((afterRss - before) / MiB).toFixed(1)} MiB`);
    await servesAGoodClient(server);
  });

  it('twenty connections each holding a 60 MB unfinished frame: the largest are dropped, the server lives and serves', async () => {
    const holders = await Promise.all(
      Array.from({ length: 20 }, () => holdFrame(server.ports.rpc, 60_000_000, 60_000_000 - 1)),
    );
    const s = await scrape(server.httpBase);
    const budget = 256 * MiB;
    assert.ok(s.value('ims_input_pending_bytes')! <= budget, `pending ${s.value('ims_input_pending_bytes')}`);
    const dropped = s.value('ims_input_dropped_total', { reason: 'over_budget' }) ?? 0;
    assert.ok(dropped >= 16, `connections dropped over budget: ${dropped}`);
    await waitFor(() => holders.filter((h) => h.closed).length >= 16, {
      what: 'sixteen or more holders closed',
    });
    assert.ok(
      holders.filter((h) => !h.closed).length >= 1,
      'holders within the budget are kept (their frames are legal)',
    );
    await server.waitForLog(
      /closed: its unfinished frame \(\d+ bytes\) is the largest .* over max_pending_bytes=268435456/,
    );
    assert.equal(server.exited, false);
    await servesAGoodClient(server);
    assert.ok((await rss(server)) < 1536 * MiB, 'RSS well under the 1.2 GB the frames would take');
    for (const h of holders) h.socket.destroy();
    await waitFor(async () => (await scrape(server.httpBase)).value('ims_input_pending_bytes') === 0, {
      what: 'pending bytes released when the holders go',
    });
  });
});

describe('stalled frames and max_connections', () => {
  let server: ServerProcess;
  before(async () => {
    server = await startServer({ config: { incomplete_frame_timeout_ms: 1000, max_connections: 3 } });
  });
  after(async () => {
    await server?.stop();
  });

  it('the default max_frame_bytes takes the largest legal request: 1000 bodies of 32 KiB in one SavePeerMessages', async () => {
    const body = imBody(1, 2, 'x'.repeat(MAX_BODY_SIZE - imBody(1, 2, '').length));
    assert.equal(body.length, MAX_BODY_SIZE);
    const item = {
      appId: '9223372036854775807',
      uid: '9223372036854775807',
      deviceId: '9223372036854775807',
      cmd: 4,
      raw: body.toString('base64'),
    };
    const messages = Array.from({ length: 1000 }, () => item);
    const frame = JSON.stringify({ pattern: 'SavePeerMessages', data: { messages }, id: 'x'.repeat(36) });
    assert.ok(frame.length > 43_000_000 && frame.length < DEFAULT_MAX_FRAME_BYTES, `frame ${frame.length}`);
    const raw = new RawRpcClient(server);
    try {
      const r = await raw.call('SavePeerMessages', { messages }, 30_000);
      assert.equal(r.ok, true, JSON.stringify(r).slice(0, 300));
      const results = (r as { value: { results: { msgId?: number }[] } }).value.results;
      assert.equal(results.length, 1000);
      assert.ok(results.every((x) => typeof x.msgId === 'number'));
    } finally {
      raw.close();
    }
  });

  it('drops an unfinished frame that stops moving', async () => {
    const h = await holdFrame(server.ports.rpc, 1000, 10);
    await waitFor(() => h.closed, { what: 'the stalled connection closed', timeoutMs: 5000 });
    await server.waitForLog(/rpc connection from 127\.0\.0\.1:\d+ closed: The remote peer stopped sending/);
    const s = await scrape(server.httpBase);
    assert.equal(s.value('ims_input_dropped_total', { reason: 'stalled' }), 1);
  });

  it('refuses connections beyond max_connections on the RPC and sync ports, with a log line', async () => {
    for (const [port, what] of [
      [server.ports.rpc, 'rpc'],
      [server.ports.sync, 'sync'],
    ] as const) {
      const open: net.Socket[] = [];
      for (let i = 0; i < 3; i++) {
        const s = net.connect({ host: '127.0.0.1', port });
        await new Promise((r) => s.once('connect', r));
        open.push(s);
      }
      await waitFor(
        async () => what !== 'rpc' || (await scrape(server.httpBase)).value('ims_rpc_connections') === 3,
        {
          what: 'three rpc connections open',
        },
      );
      const extra = net.connect({ host: '127.0.0.1', port });
      extra.on('error', () => {});
      let closed = false;
      extra.on('close', () => (closed = true));
      await waitFor(() => closed, { what: `the fourth ${what} connection refused` });
      await server.waitForLog(
        new RegExp(`${what} connection from 127\\.0\\.0\\.1:\\d+ refused: max_connections=3 reached`),
      );
      for (const s of open) s.destroy();
    }
    // Below the limit again: served.
    await waitFor(async () => (await scrape(server.httpBase)).value('ims_rpc_connections') === 0, {
      what: 'the connections gone',
    });
    await servesAGoodClient(server);
  });
});
