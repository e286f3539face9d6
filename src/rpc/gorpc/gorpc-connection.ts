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
  private deflate?: zlib.DeflateRaw;

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
    // Go's flate.BestSpeed.
    const deflate = zlib.createDeflateRaw({ level: 1 });
    deflate.on('data', (c: Buffer) => {
      if (!this.closed) this.socket.write(c);
    });
    deflate.on('error', (e) => this.fail(`cannot compress replies (${e.message})`));
    this.inflate = inflate;
    this.deflate = deflate;
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
    if (!this.deflate) return super.write(data);
    this.deflate.write(data);
    this.deflate.flush(zlib.constants.Z_SYNC_FLUSH);
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
    this.deflate?.destroy();
  }
}
