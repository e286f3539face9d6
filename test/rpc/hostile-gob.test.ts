/**
 * Issue 23's attack and its relatives: gob values that declare millions of elements in a few bytes
 * (deflate makes 4 MB of zeros 4 KB). Each must cost the server little memory and no long stall, close
 * only its own connection with one log line, and leave another connection served.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { Cmd } from '../../src/format/constants.js';
import { GoBasic, GobStreamEncoder, type GoType } from '../../src/rpc/gob/gob.js';
import { goSlice, goStruct } from '../../src/rpc/gob/go-structs.js';
import { encodeCall as gorpcCall } from '../../src/rpc/gorpc/gorpc-client.js';
import { CONNECT_REQUEST, encodeCall as netrpcCall } from '../../src/rpc/netrpc/netrpc-client.js';
import { argType, NETRPC_METHODS, Request } from '../../src/rpc/netrpc/netrpc-types.js';
import { removeDir } from '../support/fixtures.js';
import { imBody } from '../support/rpc-client.js';
import { startServer, type ServerProcess } from '../support/server-process.js';
import { sendBad } from './go-transport.js';
import { gorpcClient } from './gorpc/support.js';
import { netrpcClient } from './netrpc/support.js';

const MB = 1 << 20;
/** The bounds issue 23 sets for one such value. */
const MAX_RSS_GROWTH = 50 * MB;
const MAX_STALL_MS = 100;

/** A gob length prefix (an unsigned integer) followed by the message. */
function message(body: Buffer): Buffer {
  const len = body.length;
  if (len < 0x80) return Buffer.concat([Buffer.from([len]), body]);
  const bytes: number[] = [];
  for (let v = len; v > 0; v = Math.floor(v / 256)) bytes.unshift(v % 256);
  return Buffer.concat([Buffer.from([256 - bytes.length, ...bytes]), body]);
}

/** A gob unsigned integer. */
function uint(v: number): Buffer {
  if (v < 0x80) return Buffer.from([v]);
  const bytes: number[] = [];
  for (; v > 0; v = Math.floor(v / 256)) bytes.unshift(v % 256);
  return Buffer.from([256 - bytes.length, ...bytes]);
}

/** The type definitions `enc` sends for `t` (encoding a zero value, then dropping the value message). */
function definitions(enc: GobStreamEncoder, t: GoType, zero: unknown): Buffer {
  const all = enc.encode(t, zero);
  // The value is the last message: find where it starts by walking the length prefixes.
  let at = 0;
  let last = 0;
  while (at < all.length) {
    last = at;
    const first = all[at];
    let len = first;
    let size = 1;
    if (first >= 0x80) {
      len = 0;
      for (let i = 1; i <= 256 - first; i++) len = len * 256 + all[at + i];
      size = 1 + 256 - first;
    }
    at += size + len;
  }
  return all.subarray(0, last);
}

const Empty = goStruct(90, 'Empty', []);
const EmptyList = goSlice(91, '[]Empty', Empty);

/** One top-level value: a slice of `n` empty structs (each one byte: its end-of-struct mark). */
function emptyStructSlice(n: number): Buffer {
  const enc = new GobStreamEncoder();
  const defs = definitions(enc, EmptyList, []);
  // type id 91 (int: 91*2 = 182 = 0xff 0xb6), the singleton delta 0, the count, then n zero bytes.
  return Buffer.concat([
    defs,
    message(Buffer.concat([Buffer.from([0xff, 0xb6, 0]), uint(n), Buffer.alloc(n)])),
  ]);
}

/** A struct of the type a listener expects, with one field more: a slice of `n` empty structs. */
function withExtraField(name: string, known: [string, GoType][], n: number): Buffer {
  const t = goStruct(92, name, [...known, ['Padding', EmptyList]]);
  const enc = new GobStreamEncoder();
  const defs = definitions(enc, t, {});
  // type id 92 (0xff 0xb8), field delta to Padding, the count, n empty structs, end of struct.
  const delta = known.length + 1;
  return Buffer.concat([
    defs,
    message(Buffer.concat([Buffer.from([0xff, 0xb8, delta]), uint(n), Buffer.alloc(n), Buffer.from([0])])),
  ]);
}

/** VmRSS or VmHWM of a process, bytes. */
function memory(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no ${field} for ${pid}`);
  return Number(m[1]) * 1024;
}

/** CPU time (user + system, all threads) a process has used, ms (Linux: USER_HZ is 100). */
function cpuMs(pid: number): number {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** Resets the process's peak RSS to its current RSS (Linux: clear_refs 5). */
const resetPeak = (pid: number) => fs.writeFileSync(`/proc/${pid}/clear_refs`, '5');

/**
 * Sends `bytes` on a new connection while polling /health/live; returns the RSS growth (peak during
 * the send over RSS before), the slowest /health/live answer, and the server's lines about the connection.
 */
async function attack(
  server: ServerProcess,
  port: number,
  bytes: Buffer,
  label: RegExp,
): Promise<{ growth: number; stallMs: number; cpuMs: number; lines: string[]; received: number }> {
  const pid = server.proc.pid!;
  // Let what came before settle, so that the baseline is the server's, not the last test's garbage.
  await fetch(`${server.httpBase}/health/live`);
  resetPeak(pid);
  const before = memory(pid, 'VmRSS');
  const cpuBefore = cpuMs(pid);
  let polling = true;
  let slowest = 0;
  const poller = (async () => {
    while (polling) {
      const t0 = performance.now();
      const res = await fetch(`${server.httpBase}/health/live`);
      await res.arrayBuffer();
      slowest = Math.max(slowest, performance.now() - t0);
      await new Promise((r) => setTimeout(r, 25));
    }
  })();
  try {
    const { received, localPort } = await sendBad(port, bytes);
    const mine = new RegExp(`127\\.0\\.0\\.1:${localPort}\\b`);
    await server.waitForLog(mine, 5000);
    const growth = memory(pid, 'VmHWM') - before;
    const cpu = cpuMs(pid) - cpuBefore;
    const lines = server.lines().filter((l) => mine.test(l));
    assert.ok(
      lines.every((l) => label.test(l)),
      lines.join('\n'),
    );
    return { growth, stallMs: slowest, cpuMs: cpu, lines, received: received.length };
  } finally {
    polling = false;
    await poller;
  }
}

describe('gob values declaring millions of elements (issue 23)', () => {
  let server: ServerProcess;

  before(async () => {
    server = await startServer({
      config: { gorpc_listen: '127.0.0.1:0', netrpc_listen: '127.0.0.1:0' },
    });
  });
  after(async () => {
    await server?.stop();
    if (server) removeDir(path.dirname(server.dataDir));
  });

  const bounded = (r: Awaited<ReturnType<typeof attack>>, what: string) => {
    assert.equal(r.lines.length, 1, `one log line for the connection: ${r.lines.join('\n')}`);
    assert.match(r.lines[0], /connection closed/);
    assert.equal(r.received, 0, 'nothing written to the bad connection');
    assert.ok(r.growth < MAX_RSS_GROWTH, `${what}: RSS grew ${(r.growth / MB).toFixed(1)} MB`);
    // A stall of the event loop is time its thread spends working: all the CPU the server used while
    // it read and refused the value (every thread, the health checks' answers included) bounds it. The
    // CPU it used does not depend on what else this machine runs; /health/live's latency does, so it
    // only has to show that the server kept answering.
    assert.ok(r.cpuMs < MAX_STALL_MS, `${what}: the server used ${r.cpuMs} ms of CPU on it`);
    assert.ok(r.stallMs < 10 * MAX_STALL_MS, `${what}: /health/live took ${r.stallMs.toFixed(0)} ms`);
  };

  const gorpcServed = async () => {
    const go = await gorpcClient(server, true);
    try {
      const id = await go.call('SavePeerMessage', {
        AppID: 1,
        Uid: 2,
        DeviceID: 3,
        Cmd: Cmd.IM,
        Raw: imBody(3, 2, 'still served'),
      });
      assert.equal(typeof id, 'bigint');
    } finally {
      go.close();
    }
  };

  const N_GORPC = 4_000_000;
  const deflated = (gob: Buffer) =>
    Buffer.concat([Buffer.from([1]), zlib.deflateRawSync(gob, { finishFlush: zlib.constants.Z_SYNC_FLUSH })]);

  const gorpcCases: [string, () => Buffer][] = [
    ['a top-level slice of 4 million empty structs', () => emptyStructSlice(N_GORPC)],
    [
      'a wireRequest with an unknown field holding 4 million empty structs',
      () =>
        withExtraField(
          'wireRequest',
          [
            ['ID', GoBasic.uint],
            ['Request', GoBasic.interface],
          ],
          N_GORPC,
        ),
    ],
    [
      'a SavePeerGroupMessage with 4 million members',
      () =>
        gorpcCall(new GobStreamEncoder(), 1, 'SavePeerGroupMessage', '*main.PeerGroupMessage', {
          AppID: 1,
          Members: new Array<number>(N_GORPC).fill(0),
          Cmd: Cmd.GROUP_IM,
          Raw: Buffer.from('x'),
        }),
    ],
  ];

  for (const [what, make] of gorpcCases) {
    it(`gorpc with deflate, ${what}: under 50 MB and 100 ms, one line, others served`, async () => {
      const bytes = deflated(make());
      assert.ok(bytes.length < 8192, `the attack is small on the wire (${bytes.length} bytes)`);
      const r = await attack(
        server,
        server.ports.gorpc,
        bytes,
        /^.*gorpc 127\.0\.0\.1:\d+: .*connection closed/,
      );
      bounded(r, what);
      await gorpcServed();
    });
  }

  const N_NETRPC = 8_000_000;
  const pgm = NETRPC_METHODS.get('SavePeerGroupMessage')!;
  const netrpcCases: [string, () => Buffer][] = [
    ['a request header that is a slice of 8 million empty structs', () => emptyStructSlice(N_NETRPC)],
    [
      'a SavePeerGroupMessage with 8 million members',
      () =>
        netrpcCall(new GobStreamEncoder(), 0, 'RPCStorage.SavePeerGroupMessage', argType(pgm), {
          AppID: 1,
          Members: new Array<number>(N_NETRPC).fill(0),
          Cmd: Cmd.GROUP_IM,
          Raw: Buffer.from('x'),
        }),
    ],
    [
      'an argument with an unknown field holding 8 million empty structs',
      () =>
        Buffer.concat([
          new GobStreamEncoder().encode(Request, { ServiceMethod: 'RPCStorage.SyncMessage', Seq: 0 }),
          withExtraField('SyncHistory', [['AppID', GoBasic.int]], N_NETRPC),
        ]),
    ],
  ];

  for (const [what, make] of netrpcCases) {
    it(`net/rpc, ${what}: under 50 MB and 100 ms, one line, others served`, async () => {
      const bytes = Buffer.concat([CONNECT_REQUEST, make()]);
      assert.ok(bytes.length > N_NETRPC, 'the whole value is sent');
      const r = await attack(
        server,
        server.ports.netrpc,
        bytes,
        /netrpc (connection from )?127\.0\.0\.1:\d+:? .*(connection closed|closed:)/,
      );
      // net/rpc answers its handshake before the gob stream starts: nothing after it.
      r.received = Math.max(0, r.received - 'HTTP/1.0 200 Connected to Go RPC\n\n'.length);
      bounded(r, what);
      const go = await netrpcClient(server);
      try {
        assert.equal(await go.call('Ping', 1), 0n);
      } finally {
        go.close();
      }
    });
  }
});
