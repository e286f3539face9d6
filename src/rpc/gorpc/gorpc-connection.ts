/**
 * One gorpc connection, server side: the handshake byte (0: plain, anything else: deflate both ways),
 * gob-decoded requests handed on as they arrive, replies sent by ID in whatever order they finish, and
 * every reply ready in the same turn of the event loop packed into one write (and one deflate flush).
 * Bad input closes the connection with a log line and nothing written for it.
 */
import type * as net from 'node:net';
import * as zlib from 'node:zlib';
import { GobError, GobStreamDecoder, GobStreamEncoder, type GobValue } from '../gob/gob.js';
import type { CallOutcome } from '../go-listener.server.js';
import {
  DispatcherResponse,
  GORPC_METHODS,
  REQUEST_NAMES,
  WireResponse,
  toGorpcCall,
  toPayload,
  type GorpcMethod,
  type Payload,
} from './go-types.js';

export interface ConnectionOptions {
  /** Runs one call through the Nest handler of `method`. */
  dispatch: (method: GorpcMethod, payload: Payload, remote: string) => Promise<CallOutcome>;
  log: (message: string) => void;
  /** Largest gob message accepted. */
  maxMessage: number;
  /** Calls in flight on one connection before it stops reading. */
  maxInFlight: number;
  /** Bytes queued for the client before the connection stops reading. */
  maxQueuedOutput: number;
  /** How long a new connection may take to send its handshake byte (Go: 10 s). */
  handshakeMs: number;
}

export class GorpcConnection {
  readonly remote: string;
  private readonly decoder: GobStreamDecoder;
  private readonly encoder = new GobStreamEncoder();
  private compress = false;
  private inflate?: zlib.InflateRaw;
  private deflate?: zlib.DeflateRaw;
  private handshakeTimer?: NodeJS.Timeout;
  private started = false;
  private closed = false;
  private inFlight = 0;
  private paused = false;
  private out: Buffer[] = [];
  private flushScheduled = false;

  constructor(
    readonly socket: net.Socket,
    private readonly options: ConnectionOptions,
    private readonly onClose: (c: GorpcConnection) => void,
  ) {
    this.decoder = new GobStreamDecoder({ maxMessage: options.maxMessage, names: REQUEST_NAMES });
    this.remote = `${socket.remoteAddress}:${socket.remotePort}`;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onSocketData(chunk));
    socket.on('error', () => this.teardown());
    socket.on('close', () => this.teardown());
    socket.on('drain', () => this.maybeResume());
    this.handshakeTimer = setTimeout(
      () => this.fail(`no handshake byte within ${options.handshakeMs} ms`),
      options.handshakeMs,
    );
    this.handshakeTimer.unref();
  }

  private onSocketData(chunk: Buffer): void {
    if (this.closed) return;
    if (!this.started) {
      this.started = true;
      clearTimeout(this.handshakeTimer);
      this.compress = chunk[0] !== 0;
      if (this.compress) this.startDeflate();
      chunk = chunk.subarray(1);
      if (chunk.length === 0) return;
    }
    if (this.inflate) this.inflate.write(chunk);
    else this.onRequestBytes(chunk);
  }

  private startDeflate(): void {
    const inflate = zlib.createInflateRaw();
    inflate.on('data', (c: Buffer) => this.onRequestBytes(c));
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

  private onRequestBytes(chunk: Buffer): void {
    if (this.closed) return;
    this.decoder.push(chunk);
    this.drain();
  }

  /** Starts every complete request buffered, up to the in-flight limit. */
  private drain(): void {
    while (!this.closed && this.inFlight < this.options.maxInFlight) {
      let value: GobValue | undefined;
      try {
        value = this.decoder.next();
      } catch (err) {
        if (err instanceof GobError) return this.fail(`bad gob data: ${err.message}`);
        throw err;
      }
      if (value === undefined) {
        // A value spread over several messages, each under the limit, still must not grow without end.
        if (this.decoder.bufferedBytes > 2 * this.options.maxMessage)
          this.fail(`request larger than ${2 * this.options.maxMessage} bytes`);
        break;
      }
      try {
        this.start(value);
      } catch (err) {
        if (err instanceof GobError) return this.fail(`bad request: ${err.message}`);
        throw err;
      }
    }
    this.updateFlow();
  }

  private start(value: GobValue): void {
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
    this.inFlight++;
    this.options.dispatch(method, payload, this.remote).then(
      (outcome) => {
        this.inFlight--;
        if (outcome.ok) {
          let goValue;
          try {
            goValue = method.reply(outcome.reply);
          } catch (err) {
            outcome = { ok: false, message: `${method.pattern}: internal error: ${(err as Error).message}` };
          }
          this.reply(id, outcome.ok ? { ok: true, reply: goValue } : outcome);
        } else this.reply(id, outcome);
        this.drain();
      },
      (err: unknown) => {
        this.inFlight--;
        this.reply(id, {
          ok: false,
          message: `${method.pattern}: internal error: ${(err as Error)?.message}`,
        });
        this.drain();
      },
    );
  }

  private reply(id: bigint, outcome: CallOutcome): void {
    // gorpc's ID 0 is a one-way call: run, never answered.
    if (this.closed || id === 0n) return;
    const inner = outcome.ok ? { Response: outcome.reply } : { Error: outcome.message };
    this.out.push(
      this.encoder.encode(WireResponse, {
        ID: id,
        Response: { name: '*gorpc.dispatcherResponse', type: DispatcherResponse, value: inner },
      }),
    );
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      // Replies finishing in this turn of the event loop join the same write.
      setImmediate(() => this.flush());
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.closed || this.out.length === 0) return;
    const data = this.out.length === 1 ? this.out[0] : Buffer.concat(this.out);
    this.out = [];
    if (this.deflate) {
      this.deflate.write(data);
      this.deflate.flush(zlib.constants.Z_SYNC_FLUSH);
    } else this.socket.write(data);
    this.updateFlow();
  }

  /** Stops reading while too many calls are in flight or too many reply bytes wait for the client. */
  private updateFlow(): void {
    if (this.closed) return;
    const busy =
      this.inFlight >= this.options.maxInFlight || this.socket.writableLength > this.options.maxQueuedOutput;
    if (busy && !this.paused) {
      this.paused = true;
      this.socket.pause();
      this.inflate?.pause();
    } else if (!busy && this.paused) this.maybeResume();
  }

  private maybeResume(): void {
    if (this.closed || !this.paused) return;
    if (
      this.inFlight >= this.options.maxInFlight ||
      this.socket.writableLength > this.options.maxQueuedOutput
    )
      return;
    this.paused = false;
    this.socket.resume();
    this.inflate?.resume();
    this.drain();
  }

  /** Closes the connection for bad input, saying why. */
  fail(reason: string): void {
    if (this.closed) return;
    this.options.log(`gorpc ${this.remote}: ${reason}; connection closed`);
    this.teardown();
  }

  teardown(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.handshakeTimer);
    this.out = [];
    this.socket.destroy();
    this.inflate?.destroy();
    this.deflate?.destroy();
    this.onClose(this);
  }
}
