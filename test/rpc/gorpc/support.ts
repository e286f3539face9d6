/** The captured Go gorpc conversations (test/fixtures/go-ims-2.0/small/wire) and helpers to replay them. */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as zlib from 'node:zlib';
import { GobStreamDecoder, GobStruct, type GobInterface, type GobValue } from '../../../src/rpc/gob/gob.js';
import { REPLY_NAMES, REQUEST_NAMES } from '../../../src/rpc/gorpc/go-types.js';
import { GorpcCallError, GorpcClient } from '../../../src/rpc/gorpc/gorpc-client.js';
import { fixturePath, type GoMessage } from '../../support/fixtures.js';
import type { ServerProcess } from '../../support/server-process.js';
import type { GoTransport, RecordedSync } from '../go-transport.js';

export interface CapturedCall {
  method: string;
  req: Record<string, number | string>;
  resp: number | GoMessage[] | { Messages: GoMessage[]; LastMsgID: number };
}

export interface Capture {
  mode: 'plain' | 'deflate';
  calls: CapturedCall[];
  c2s: Buffer;
  s2c: Buffer;
}

export function loadCaptures(): Capture[] {
  const list = JSON.parse(fs.readFileSync(fixturePath('wire', 'calls.json'), 'utf8')) as {
    mode: 'plain' | 'deflate';
    calls: CapturedCall[];
    c2s_file: string;
    s2c_file: string;
  }[];
  return list.map((c) => ({
    mode: c.mode,
    calls: c.calls,
    c2s: fs.readFileSync(fixturePath('wire', c.c2s_file)),
    s2c: fs.readFileSync(fixturePath('wire', c.s2c_file)),
  }));
}

/** A deflate stream that was only ever sync-flushed, inflated. */
export const inflateFlushed = (b: Buffer): Buffer =>
  zlib.inflateRawSync(b, { finishFlush: zlib.constants.Z_SYNC_FLUSH });

/** Where each call starts in a plain gob stream (the handshake byte already removed). */
export function callBoundaries(gob: Buffer, names: ReadonlySet<string> = REQUEST_NAMES): number[] {
  const d = new GobStreamDecoder({ maxMessage: 1 << 20, names });
  d.push(gob);
  const cuts = [0];
  while (d.next() !== undefined) cuts.push(d.consumed);
  return cuts;
}

/** The captured client side cut into one piece per call (after the handshake byte). */
export function callPieces(capture: Capture): Buffer[] {
  const body = capture.c2s.subarray(1);
  const cuts: number[] = [0];
  if (capture.mode === 'plain') cuts.push(...callBoundaries(body).slice(1));
  else {
    // Go's client sync-flushes its deflate stream after each call: the flush marker ends each piece.
    for (let at = body.indexOf(SYNC_MARK); at >= 0; at = body.indexOf(SYNC_MARK, at + 4)) cuts.push(at + 4);
  }
  return cuts.slice(1).map((end, i) => body.subarray(cuts[i], end));
}
const SYNC_MARK = Buffer.from([0, 0, 0xff, 0xff]);

/**
 * Go's answers with ims's one deliberate difference: Go 2.0's GetNewCount answers 0 on stores written
 * by 2.0 itself (README "Compatibility with Go ims 2.0", bug 4); ims counts the new message and says 1.
 * The int64 1 is one byte (0x02) where 0 was (0x00), in the reply that carries GetNewCount's answer.
 */
export function expectedServerSide(capture: Capture): Buffer {
  const plain = capture.mode === 'plain' ? capture.s2c : inflateFlushed(capture.s2c);
  const index = capture.calls.findIndex((c) => c.method === 'GetNewCount');
  const cuts = callBoundaries(plain, REPLY_NAMES);
  const reply = plain.subarray(cuts[index], cuts[index + 1]);
  // "int64", its type id (int: 0x04), byte count 2, singleton delta 0, then the value.
  const pattern = Buffer.from('05696e7436340402', 'hex');
  const at = reply.indexOf(pattern);
  if (at < 0 || reply[at + pattern.length] !== 0 || reply[at + pattern.length + 1] !== 0)
    throw new Error('GetNewCount reply not as expected in the capture');
  const out = Buffer.from(plain);
  out[cuts[index] + at + pattern.length + 1] = 0x02;
  return out;
}

/**
 * Replays the captured client side on a fresh connection, one call at a time (each sent only when the
 * previous answer is complete), and returns everything the server sent (inflated for deflate).
 */
export async function replay(port: number, capture: Capture): Promise<Buffer> {
  const pieces = callPieces(capture);
  const socket = net.connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const received: Buffer[] = [];
  const replies = new GobStreamDecoder({ maxMessage: 1 << 20, names: REPLY_NAMES });
  const inflate = capture.mode === 'deflate' ? zlib.createInflateRaw() : undefined;
  let waiting: (() => void) | undefined;
  let count = 0;
  const onPlain = (chunk: Buffer) => {
    received.push(chunk);
    replies.push(chunk);
    while (replies.next() !== undefined) count++;
    waiting?.();
  };
  if (inflate) {
    socket.pipe(inflate);
    inflate.on('data', onPlain);
  } else socket.on('data', onPlain);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.write(capture.c2s.subarray(0, 1));
  for (const [i, piece] of pieces.entries()) {
    const answered = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no answer to call ${i + 1} in 5 s`)), 5000);
      waiting = () => {
        if (count > i) {
          clearTimeout(timer);
          resolve();
        }
      };
      void closed.then(() => reject(new Error(`connection closed before answer ${i + 1}`)));
    });
    socket.write(piece);
    await answered;
  }
  socket.destroy();
  return Buffer.concat(received);
}

/** A reply value in the shape calls.json records (empty lists and zero ids written out). */
export function asRecorded(v: GobValue): unknown {
  const msg = (m: GobValue): GoMessage => {
    const f = (m as GobStruct).fields;
    return {
      MsgID: Number(f.get('MsgID') ?? 0n),
      DeviceID: Number(f.get('DeviceID') ?? 0n),
      Cmd: Number(f.get('Cmd') ?? 0n),
      Raw: ((f.get('Raw') as Buffer | undefined) ?? Buffer.alloc(0)).toString('base64'),
    };
  };
  if (typeof v === 'bigint') return Number(v);
  if (Array.isArray(v)) return v.map(msg);
  if (v instanceof GobStruct)
    return {
      Messages: ((v.fields.get('Messages') as GobValue[] | undefined) ?? []).map(msg),
      LastMsgID: Number(v.fields.get('LastMsgID') ?? 0n),
    };
  return v;
}

export type { GobInterface };

export async function gorpcClient(server: ServerProcess, compress = false): Promise<GorpcClient> {
  return GorpcClient.connect('127.0.0.1', server.ports.gorpc, { compress });
}

export const GORPC: GoTransport = {
  title: 'gorpc',
  key: 'gorpc_listen',
  connect: (server) => gorpcClient(server),
  CallError: GorpcCallError,
  savedId: (v) => Number(v),
  sync: (v) => asRecorded(v) as RecordedSync,
  emptySync: { Messages: [], LastMsgID: 0 },
};
