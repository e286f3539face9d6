/**
 * One net/rpc connection, server side: the HTTP CONNECT handshake, then gob-encoded calls, each a
 * `Request{ServiceMethod, Seq}` header followed by its argument, answered by a `Response{ServiceMethod,
 * Seq, Error}` header followed by the reply (or, after an error, Go's empty placeholder struct).
 *
 * As in Go's server, calls run concurrently and are answered as they finish (the client matches them by
 * Seq); a call to an unknown service or method, or with an argument of the wrong type, is answered with
 * the error string Go's server sends, and the connection carries on. Input Go's server cannot read at all
 * (not gob, a header that is not a Request) closes the connection with a log line, nothing written. The
 * input is bounded like the Nest transport's: max_frame_bytes per gob message, the max_pending_bytes
 * budget, incomplete_frame_timeout_ms.
 */
import type * as net from 'node:net';
import { GobError, GobLimitError, GobStreamDecoder, GobStreamEncoder, type GobValue } from '../gob/gob.js';
import { toPayload } from '../gob/go-structs.js';
import type { CallOutcome, GoConnection } from '../go-listener.server.js';
import type { DropReason, PendingHolder } from '../input-bounds.js';
import { CONNECTED, readConnectRequest } from './http-connect.js';
import {
  InvalidRequest,
  Response,
  argDecodeError,
  lookupMethod,
  toRequestHeader,
  type GoReply,
  type NetrpcMethod,
  type RequestHeader,
  type TypeDefs,
} from './netrpc-types.js';

/** The parts of InputBounds a connection uses (the shared budget and the drop log/counter). */
export interface ConnectionBounds {
  hold(holder: PendingHolder, bytes: number): void;
  noteDrop(what: string, address: string, reason: DropReason, detail: string): void;
}

export interface NetrpcConnectionOptions {
  /** Runs one call through the Nest handler of `pattern`. */
  dispatch: (pattern: string, payload: unknown, remote: string) => Promise<CallOutcome>;
  log: (message: string) => void;
  /** Largest gob message accepted (max_frame_bytes). */
  maxMessage: number;
  /** Calls in flight on one connection before it stops reading. */
  maxInFlight: number;
  /** Bytes queued for the client before the connection stops reading. */
  maxQueuedOutput: number;
  /** How long a new connection may take to send its CONNECT request. */
  handshakeMs: number;
  /** Longest HTTP request head accepted. */
  maxHead: number;
  /** An unfinished gob message that receives nothing this long is dropped (incomplete_frame_timeout_ms). */
  stallMs: number;
  /** The process's input budget (max_pending_bytes) and drop counters; none in unit tests. */
  bounds?: ConnectionBounds;
}

/** A call whose header has been read: where it goes, or the error Go answers it with. */
interface PendingCall extends RequestHeader {
  target: NetrpcMethod | string;
}

type Answer = { ok: true; reply: GoReply } | { ok: false; message: string };

export class NetrpcConnection implements GoConnection, PendingHolder {
  readonly address: string;
  private readonly decoder: GobStreamDecoder;
  private readonly defs: TypeDefs;
  private readonly encoder = new GobStreamEncoder();
  private head: Buffer | null = Buffer.alloc(0);
  private call?: PendingCall;
  private handshakeTimer?: NodeJS.Timeout;
  private stallTimer?: NodeJS.Timeout;
  private closed = false;
  /** An HTTP refusal is being written: nothing more is read. */
  private ending = false;
  private inFlight = 0;
  private paused = false;
  private out: Buffer[] = [];
  private flushScheduled = false;

  constructor(
    readonly socket: net.Socket,
    private readonly options: NetrpcConnectionOptions,
    private readonly onClose: (c: NetrpcConnection) => void,
  ) {
    // net/rpc sends no interface values: no type name is acceptable in one.
    this.decoder = new GobStreamDecoder({ maxMessage: options.maxMessage, names: new Set() });
    this.defs = (id) => this.decoder.typeDef(id);
    this.address = `${socket.remoteAddress}:${socket.remotePort}`;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onSocketData(chunk));
    socket.on('error', () => this.teardown());
    socket.on('close', () => this.teardown());
    socket.on('drain', () => this.maybeResume());
    this.handshakeTimer = setTimeout(
      () => this.fail(`no HTTP CONNECT request within ${options.handshakeMs} ms`),
      options.handshakeMs,
    );
    this.handshakeTimer.unref();
  }

  private onSocketData(chunk: Buffer): void {
    if (this.closed || this.ending) return;
    if (this.head) return this.onHeadBytes(this.head, chunk);
    this.decoder.push(chunk);
    this.drain();
  }

  /** The HTTP request head, until it is complete: CONNECT, or Go's HTTP answer and the connection closed. */
  private onHeadBytes(before: Buffer, chunk: Buffer): void {
    const head = before.length === 0 ? chunk : Buffer.concat([before, chunk]);
    const r = readConnectRequest(head, this.options.maxHead);
    if (r.kind === 'incomplete') {
      this.head = head;
      return;
    }
    clearTimeout(this.handshakeTimer);
    this.head = null;
    if (r.kind === 'refused') return this.refuse(r.response, r.reason);
    this.socket.write(CONNECTED);
    if (r.rest.length > 0) {
      this.decoder.push(r.rest);
      this.drain();
    }
  }

  /** Reads every complete header and argument buffered, starting calls up to the in-flight limit. */
  private drain(): void {
    while (!this.closed && this.inFlight < this.options.maxInFlight) {
      let value: GobValue | undefined;
      try {
        value = this.decoder.next();
      } catch (err) {
        if (err instanceof GobLimitError)
          return this.drop(
            'frame_too_large',
            `it announced a gob message of ${err.length} bytes; max_frame_bytes is ${err.limit}`,
          );
        if (err instanceof GobError) return this.fail(`bad gob data: ${err.message}`);
        throw err;
      }
      if (value === undefined) {
        // A value spread over several messages, each under the limit, still must not grow without end.
        if (this.decoder.bufferedBytes > 2 * this.options.maxMessage)
          return this.drop(
            'frame_too_large',
            `it sent a value of more than ${2 * this.options.maxMessage} bytes; max_frame_bytes is ${this.options.maxMessage}`,
          );
        break;
      }
      if (!this.call) {
        const header = toRequestHeader(value, this.decoder.lastType, this.defs);
        // Go's server stops serving a connection whose header it cannot decode.
        if (typeof header === 'string') return this.fail(header);
        this.call = { ...header, target: lookupMethod(header.serviceMethod) };
        continue;
      }
      const call = this.call;
      this.call = undefined;
      try {
        this.start(call, value);
      } catch (err) {
        if (err instanceof GobError) return this.fail(`bad request: ${err.message}`);
        throw err;
      }
    }
    this.afterRead();
  }

  private start(call: PendingCall, arg: GobValue): void {
    const method = call.target;
    // Unknown service or method: Go reads the argument, drops it, and answers the error.
    if (typeof method === 'string') return this.answer(call, { ok: false, message: method });
    const refusal = argDecodeError(method, this.decoder.lastType, this.defs, arg);
    if (refusal) return this.answer(call, { ok: false, message: refusal });
    const payload =
      method.arg.kind === 'int' ? {} : toPayload(method.arg.request, method.arg.payloadKeys, arg);
    this.inFlight++;
    this.options.dispatch(method.pattern, payload, this.address).then(
      (outcome) => {
        this.inFlight--;
        this.answer(call, this.toAnswer(method, outcome));
        this.drain();
      },
      (err: unknown) => {
        this.inFlight--;
        this.answer(call, {
          ok: false,
          message: `${method.pattern}: internal error: ${(err as Error)?.message}`,
        });
        this.drain();
      },
    );
  }

  private toAnswer(method: NetrpcMethod, outcome: CallOutcome): Answer {
    if (!outcome.ok) return outcome;
    try {
      return { ok: true, reply: method.reply(outcome.reply) };
    } catch (err) {
      return { ok: false, message: `${method.pattern}: internal error: ${(err as Error).message}` };
    }
  }

  private answer(call: PendingCall, answer: Answer): void {
    if (this.closed) return;
    // An empty Error would read as success to the Go client, which would then misread the placeholder.
    const error = answer.ok ? '' : answer.message || 'internal error';
    let bytes: Buffer[];
    try {
      bytes = [
        this.encoder.encode(Response, { ServiceMethod: call.serviceMethod, Seq: call.seq, Error: error }),
        answer.ok
          ? this.encoder.encode(answer.reply.type, answer.reply.value)
          : this.encoder.encode(InvalidRequest, {}),
      ];
    } catch (err) {
      // The encoder has noted type definitions as sent that never will be: the stream cannot go on.
      return this.fail(`cannot encode the answer to ${call.serviceMethod}: ${(err as Error).message}`);
    }
    this.out.push(...bytes);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      // Answers finishing in this turn of the event loop join the same write.
      setImmediate(() => this.flush());
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.closed || this.out.length === 0) return;
    const data = this.out.length === 1 ? this.out[0] : Buffer.concat(this.out);
    this.out = [];
    this.socket.write(data);
    this.updateFlow();
  }

  /** After a read: report the bytes held to the budget, watch an unfinished message, apply flow control. */
  private afterRead(): void {
    if (this.closed) return;
    this.options.bounds?.hold(this, this.decoder.bufferedBytes);
    // Over the budget, the connection dropped may be this one.
    if (this.closed) return;
    this.updateFlow();
    clearTimeout(this.stallTimer);
    if (!this.paused && this.decoder.bufferedBytes > 0) {
      this.stallTimer = setTimeout(
        () =>
          this.drop(
            'stalled',
            `its unfinished gob message (${this.decoder.bufferedBytes} bytes held) received nothing for ${this.options.stallMs} ms (incomplete_frame_timeout_ms)`,
          ),
        this.options.stallMs,
      );
      this.stallTimer.unref();
    }
  }

  /** Stops reading while too many calls are in flight or too many reply bytes wait for the client. */
  private updateFlow(): void {
    if (this.closed) return;
    const busy =
      this.inFlight >= this.options.maxInFlight || this.socket.writableLength > this.options.maxQueuedOutput;
    if (busy && !this.paused) {
      this.paused = true;
      clearTimeout(this.stallTimer);
      this.socket.pause();
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
    this.drain();
  }

  /** Answers a request that is not net/rpc's CONNECT as Go's HTTP server would, then closes. */
  private refuse(response: Buffer, reason: string): void {
    this.options.log(`netrpc ${this.address}: ${reason}; connection closed`);
    this.ending = true;
    this.socket.end(response, () => this.teardown());
    // Should the client never read the answer, the connection still goes.
    setTimeout(() => this.teardown(), 5000).unref();
  }

  /** Closes the connection for input it cannot serve, saying why (nothing more is written to it). */
  fail(reason: string): void {
    if (this.closed) return;
    this.options.log(`netrpc ${this.address}: ${reason}; connection closed`);
    this.teardown();
  }

  /** Closes the connection for one of the input bounds (counted and logged as the Nest transport's). */
  drop(reason: DropReason, detail: string): void {
    if (this.closed) return;
    if (this.options.bounds) this.options.bounds.noteDrop('netrpc', this.address, reason, detail);
    else this.options.log(`netrpc connection from ${this.address} closed: ${detail}`);
    this.teardown();
  }

  teardown(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.handshakeTimer);
    clearTimeout(this.stallTimer);
    this.out = [];
    this.socket.destroy();
    this.options.bounds?.hold(this, 0);
    this.onClose(this);
  }
}
