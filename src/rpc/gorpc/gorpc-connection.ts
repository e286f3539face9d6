/**
 * One gorpc connection, server side: the handshake byte (0: plain, anything else: deflate both ways),
 * gob-decoded requests handed on as they arrive, replies sent by ID in whatever order they finish, and
 * every reply ready in the same turn of the event loop packed into one write (and one deflate flush).
 * Bad input closes the connection with a log line and nothing written for it.
 */
import type * as net from 'node:net';
import * as zlib from 'node:zlib';
import { GobError, type Decoded, type DecodePlan, type GoInterfaceValue } from '../gob/gob.js';
import { GoCallConnection, type GoConnectionOptions } from '../go-connection.js';
import type { CallOutcome, GoConnection } from '../go-listener.server.js';
import {
  DispatcherResponse,
  GORPC_METHODS,
  REQUEST_NAMES,
  WIRE_REQUEST_LOCAL,
  WireResponse,
  toGorpcCall,
  toPayload,
} from './go-types.js';

export class GorpcConnection extends GoCallConnection {
  private started = false;
  private inflate?: zlib.InflateRaw;
  /** Replies go out deflated (the client's handshake byte asked for it). */
  private deflate = false;

  constructor(socket: net.Socket, options: GoConnectionOptions, onClose: (c: GoConnection) => void) {
    super(socket, options, { label: 'gorpc', handshake: 'no handshake byte', names: REQUEST_NAMES }, onClose);
  }

  protected onSocketData(chunk: Buffer): void {
    if (this.closed) return;
    if (!this.started) {
      this.started = true;
      this.handshakeDone();
      if (chunk[0] !== 0) this.startDeflate();
      chunk = chunk.subarray(1);
      if (chunk.length === 0) return;
    }
    if (this.inflate) this.inflate.write(chunk);
    else this.readGob(chunk);
  }

  private startDeflate(): void {
    const inflate = zlib.createInflateRaw();
    inflate.on('data', (c: Buffer) => this.readGob(c));
    inflate.on('error', (e) => this.fail(`request stream is not deflate data (${e.message})`));
    this.inflate = inflate;
    this.deflate = true;
  }

  /** Every top-level value on a gorpc stream is a wireRequest. */
  protected plan: DecodePlan = () => WIRE_REQUEST_LOCAL;

  protected onValue(value: Decoded): void {
    const call = toGorpcCall(value);
    // Go's dispatcher is given functions, not services: their call names are ".Name".
    const method = call.name.startsWith('.') ? GORPC_METHODS.get(call.name.slice(1)) : undefined;
    if (!method) throw new GobError(`unknown method ${JSON.stringify(call.name)}`);
    const id = call.id;
    const want = method.request.goName;
    if (call.request?.name !== want) {
      // Well-formed, but not what the method takes: answered as Go's dispatcher answers it.
      this.reply(id, {
        ok: false,
        message: `gorpc.Dispatcher: unexpected request type for method [${call.name}]: ${call.request?.name ?? '<nil>'}. Expected ${want}`,
      });
      return;
    }
    const payload = toPayload(method, call.request.value);
    this.run(method, payload, (outcome) => this.reply(id, outcome));
  }

  private reply(id: number | bigint, outcome: CallOutcome<GoInterfaceValue>): void {
    // gorpc's ID 0 is a one-way call: run, never answered.
    if (this.closed || id === 0 || id === 0n) return;
    const inner = outcome.ok ? { Response: outcome.reply } : { Error: outcome.message };
    let bytes: Buffer;
    try {
      bytes = this.encoder.encode(WireResponse, {
        ID: id,
        Response: { name: '*gorpc.dispatcherResponse', type: DispatcherResponse, value: inner },
      });
    } catch (err) {
      // The encoder has noted type definitions as sent that never will be: the stream cannot go on.
      return this.fail(`cannot encode the answer to call ${id}: ${(err as Error).message}`);
    }
    this.send(bytes);
  }

  protected override write(data: Buffer): void {
    super.write(this.deflate ? deflateSegment(data) : data);
  }

  protected override pauseReading(): void {
    super.pauseReading();
    this.inflate?.pause();
  }

  protected override resumeReading(): void {
    super.resumeReading();
    this.inflate?.resume();
  }

  protected override released(): void {
    this.inflate?.destroy();
  }
}

/** Below this, a batch of replies gains too little from a fresh compressor to pay for one. */
const STORE_BELOW = 128;

/**
 * One turn's replies as a piece of the connection's raw deflate stream, made synchronously. A raw deflate
 * stream is a sequence of blocks, and each piece here ends with a sync flush (byte-aligned, no final
 * block), so pieces made independently follow one another validly: the client's inflater reads them as
 * one stream (back-references stay inside each piece, which its window holds). This costs a few
 * microseconds in this thread where a deflate stream costs a thread-pool round trip per flush (issue 28).
 * Small batches go as stored blocks (the data as is, 5 bytes of framing per 64 KiB).
 */
export function deflateSegment(data: Buffer): Buffer {
  if (data.length >= STORE_BELOW)
    return zlib.deflateRawSync(data, {
      level: 1, // Go's flate.BestSpeed
      // A small window and hash make the compressor cheap to set up: replies repeat within themselves.
      windowBits: 12,
      memLevel: 4,
      finishFlush: zlib.constants.Z_SYNC_FLUSH,
    });
  // A stored block: header byte 0 (not final, type 00, padded to the byte), LEN and its complement (LE).
  const out = Buffer.allocUnsafe(data.length + 5);
  out[0] = 0;
  out.writeUInt16LE(data.length, 1);
  out.writeUInt16LE(~data.length & 0xffff, 3);
  data.copy(out, 5);
  return out;
}
