/**
 * The captured Go net/rpc conversation (test/fixtures/go-ims-newest/small/wire: a Go client's
 * rpc.DialHTTP against the newest Go ims, one call of each method) and helpers to cut and replay it.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { GobStreamDecoder, GobStruct, type GobValue } from '../../../src/rpc/gob/gob.js';
import { CONNECTED } from '../../../src/rpc/netrpc/http-connect.js';
import { CONNECT_REQUEST, NetrpcCallError, NetrpcClient } from '../../../src/rpc/netrpc/netrpc-client.js';
import { REPO_ROOT } from '../../support/fixtures.js';
import type { ServerProcess } from '../../support/server-process.js';
import type { GoTransport, RecordedSync } from '../go-transport.js';

export const WIRE_DIR = path.join(REPO_ROOT, 'test/fixtures/go-ims-newest/small/wire');

export interface GoId {
  MsgID: number;
  PrevMsgID: number;
}
export interface GoMessage {
  MsgID: number;
  DeviceID: number;
  Cmd: number;
  Raw: string;
}
export interface GoHistory {
  Messages: GoMessage[];
  LastMsgID?: number;
  HasMore?: boolean;
}

export interface WireCall {
  method: string;
  req: Record<string, unknown> | number;
  resp: GoId | { MessageIDs: GoId[] } | GoHistory | number;
}

export interface Wire {
  calls: WireCall[];
  /** Client → server, from the CONNECT request on. */
  c2s: Buffer;
  /** Server → client, from the 200 line on. */
  s2c: Buffer;
  /** The client's gob stream (after the CONNECT request). */
  clientGob: Buffer;
  /** The server's gob stream (after its 200 line). */
  serverGob: Buffer;
}

export function loadWire(): Wire {
  const list = JSON.parse(fs.readFileSync(path.join(WIRE_DIR, 'calls.json'), 'utf8')) as {
    calls: WireCall[];
    c2s_file: string;
    s2c_file: string;
  };
  const c2s = fs.readFileSync(path.join(WIRE_DIR, list.c2s_file));
  const s2c = fs.readFileSync(path.join(WIRE_DIR, list.s2c_file));
  if (!c2s.subarray(0, CONNECT_REQUEST.length).equals(CONNECT_REQUEST)) throw new Error('c2s: no CONNECT');
  if (!s2c.subarray(0, CONNECTED.length).equals(CONNECTED)) throw new Error('s2c: no 200 line');
  return {
    calls: list.calls,
    c2s,
    s2c,
    clientGob: c2s.subarray(CONNECT_REQUEST.length),
    serverGob: s2c.subarray(CONNECTED.length),
  };
}

/** Every top-level value of a gob stream, with the type id each was sent as. */
export function decodeAll(gob: Buffer): { values: GobValue[]; types: number[]; decoder: GobStreamDecoder } {
  const decoder = new GobStreamDecoder({ maxMessage: 1 << 20, names: new Set() });
  decoder.push(gob);
  const values: GobValue[] = [];
  const types: number[] = [];
  for (let v = decoder.next(); v !== undefined; v = decoder.next()) {
    values.push(v);
    types.push(decoder.lastType);
  }
  if (decoder.bufferedBytes !== 0) throw new Error('bytes left over after the last value');
  return { values, types, decoder };
}

/** A gob stream of header/body pairs cut into one piece per call (each piece: its header and its body). */
export function callPieces(gob: Buffer): Buffer[] {
  const decoder = new GobStreamDecoder({ maxMessage: 1 << 20, names: new Set() });
  decoder.push(gob);
  const cuts = [0];
  let n = 0;
  while (decoder.next() !== undefined) if (++n % 2 === 0) cuts.push(decoder.consumed);
  return cuts.slice(1).map((end, i) => gob.subarray(cuts[i], end));
}

/** A reply body in the shape calls.json records it (empty lists written out, zero ids as 0). */
export function asRecorded(method: string, v: GobValue): unknown {
  const f = (s: GobValue) => (s as GobStruct).fields;
  const num = (x: GobValue | undefined) => Number((x as bigint | undefined) ?? 0n);
  const msg = (m: GobValue): GoMessage => ({
    MsgID: num(f(m).get('MsgID')),
    DeviceID: num(f(m).get('DeviceID')),
    Cmd: num(f(m).get('Cmd')),
    Raw: ((f(m).get('Raw') as Buffer | undefined) ?? Buffer.alloc(0)).toString('base64'),
  });
  const id = (m: GobValue): GoId => ({
    MsgID: num(f(m).get('MsgID')),
    PrevMsgID: num(f(m).get('PrevMsgID')),
  });
  const list = (x: GobValue | undefined) => (x as GobValue[] | undefined) ?? [];
  switch (method) {
    case 'SavePeerMessage':
    case 'SaveGroupMessage':
      return id(v);
    case 'SavePeerGroupMessage':
      return { MessageIDs: list(f(v).get('MessageIDs')).map(id) };
    case 'SyncMessage':
    case 'SyncGroupMessage':
      return {
        Messages: list(f(v).get('Messages')).map(msg),
        LastMsgID: num(f(v).get('LastMsgID')),
        HasMore: f(v).get('HasMore') === true,
      };
    case 'GetLatestMessage':
      return { Messages: list(f(v).get('Messages')).map(msg) };
    default:
      return num(v);
  }
}

/** A Go argument from calls.json as the client encoder takes it (Raw as bytes). */
export function goArg(c: WireCall): unknown {
  if (typeof c.req === 'number') return c.req;
  return Object.fromEntries(
    Object.entries(c.req).map(([k, v]) => [k, k === 'Raw' ? Buffer.from(String(v), 'base64') : v]),
  );
}

/** A raw connection that has made the CONNECT handshake; `received` collects everything after the 200 line. */
export class RawNetrpc {
  private chunks: Buffer[] = [];
  private waiters: (() => void)[] = [];
  closed = false;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (c: Buffer) => {
      this.chunks.push(c);
      for (const w of this.waiters.splice(0)) w();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.closed = true;
      for (const w of this.waiters.splice(0)) w();
    });
  }

  static async open(port: number): Promise<RawNetrpc> {
    const s = net.connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => s.once('connect', resolve).once('error', reject));
    const raw = new RawNetrpc(s);
    s.write(CONNECT_REQUEST);
    await raw.waitFor((b) => b.length >= CONNECTED.length, 'the 200 line');
    const head = raw.take(CONNECTED.length);
    if (!head.equals(CONNECTED)) throw new Error(`handshake answered ${head.toString('latin1')}`);
    return raw;
  }

  get received(): Buffer {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0] ?? Buffer.alloc(0);
  }

  /** Removes and returns the first `n` bytes received. */
  take(n: number): Buffer {
    const all = this.received;
    this.chunks = [all.subarray(n)];
    return all.subarray(0, n);
  }

  async waitFor(done: (received: Buffer) => boolean, what: string, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!done(this.received)) {
      if (this.closed) throw new Error(`connection closed while waiting for ${what}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Sends one call's bytes and returns the next `values` gob values the server sends (definitions included). */
  async exchange(bytes: Buffer, values = 2): Promise<Buffer> {
    this.socket.write(bytes);
    let end = -1;
    await this.waitFor((b) => (end = endOfValues(b, values)) >= 0, 'the answer');
    return this.take(end);
  }

  close(): void {
    this.socket.destroy();
  }
}

/**
 * Where the first `values` top-level values of `b` end (-1: not all there yet), without decoding them
 * (their types may have been defined earlier on the stream). net/rpc sends no interface values, so each
 * value is one message whose type id is not negative, after the definitions (negative ids) it needs.
 */
export function endOfValues(b: Buffer, values: number): number {
  let at = 0;
  for (let seen = 0; seen < values;) {
    if (at >= b.length) return -1;
    let len = b[at];
    let size = 1;
    if (len >= 0x80) {
      const n = 256 - len;
      if (at + 1 + n > b.length) return -1;
      len = 0;
      for (let i = 1; i <= n; i++) len = len * 256 + b[at + i];
      size = 1 + n;
    }
    if (at + size + len > b.length) return -1;
    // The type id is a gob int: negative when its unsigned form is odd (its last byte's low bit).
    const first = b[at + size];
    const last = first < 0x80 ? first : b[at + size + (256 - first)];
    if ((last & 1) === 0) seen++;
    at += size + len;
  }
  return at;
}

export async function netrpcClient(server: ServerProcess): Promise<NetrpcClient> {
  return NetrpcClient.connect('127.0.0.1', server.ports.netrpc);
}

export const NETRPC: GoTransport = {
  title: 'net/rpc',
  key: 'netrpc_listen',
  connect: netrpcClient,
  CallError: NetrpcCallError,
  savedId: (v) => (asRecorded('SavePeerMessage', v) as GoId).MsgID,
  sync: (v) => asRecorded('SyncMessage', v) as RecordedSync,
  emptySync: { Messages: [], LastMsgID: 0, HasMore: false },
};
