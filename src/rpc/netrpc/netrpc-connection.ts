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
import { SKIPPED, type Decoded, type DecodePlan } from '../gob/gob.js';
import { GoCallConnection, type GoConnectionOptions } from '../go-connection.js';
import type { CallOutcome, GoConnection } from '../go-listener.server.js';
import { CONNECTED, readConnectRequest } from './http-connect.js';
import {
  InvalidRequest,
  REQUEST_HEADER_LOCAL,
  Response,
  argLocal,
  argPayload,
  argTypeError,
  argValueError,
  headerTypeError,
  lookupMethod,
  toRequestHeader,
  type GoReply,
  type NetrpcMethod,
  type RequestHeader,
  type TypeDefs,
} from './netrpc-types.js';

export interface NetrpcConnectionOptions extends GoConnectionOptions {
  /** Longest HTTP request head accepted. */
  maxHead: number;
}

/** A call whose header has been read: where it goes, or the error Go answers it with. */
interface PendingCall extends RequestHeader {
  target: NetrpcMethod | string;
}

export class NetrpcConnection extends GoCallConnection<NetrpcConnectionOptions> {
  private readonly defs: TypeDefs;
  private head: Buffer | null = Buffer.alloc(0);
  private call?: PendingCall;
  /** An HTTP refusal is being written: nothing more is read. */
  private ending = false;

  constructor(socket: net.Socket, options: NetrpcConnectionOptions, onClose: (c: GoConnection) => void) {
    // net/rpc sends no interface values: no type name is acceptable in one.
    super(
      socket,
      options,
      { label: 'netrpc', handshake: 'no HTTP CONNECT request', names: new Set() },
      onClose,
    );
    this.defs = (id) => this.decoder.typeDef(id);
  }

  protected onSocketData(chunk: Buffer): void {
    if (this.closed || this.ending) return;
    if (this.head) return this.onHeadBytes(this.head, chunk);
    this.readGob(chunk);
  }

  /** The HTTP request head, until it is complete: CONNECT, or Go's HTTP answer and the connection closed. */
  private onHeadBytes(before: Buffer, chunk: Buffer): void {
    const head = before.length === 0 ? chunk : Buffer.concat([before, chunk]);
    const r = readConnectRequest(head, this.options.maxHead);
    if (r.kind === 'incomplete') {
      this.head = head;
      return;
    }
    this.handshakeDone();
    this.head = null;
    if (r.kind === 'refused') return this.refuse(r.response, r.reason);
    this.socket.write(CONNECTED);
    if (r.rest.length > 0) this.readGob(r.rest);
  }

  /** Go's reason for refusing the value just read (read and dropped, SKIPPED), if it was refused. */
  private refusal: string | null = null;

  /**
   * A call is a header, then its argument: each decoded straight into the type Go's server reads it
   * into, or, when Go's decoder would refuse the sender's type, read and dropped with Go's reason kept.
   */
  protected plan: DecodePlan = (id) => {
    this.refusal = null;
    const call = this.call;
    if (!call) {
      this.refusal = headerTypeError(id, this.defs);
      return this.refusal ? null : REQUEST_HEADER_LOCAL;
    }
    // Unknown service or method: Go reads the argument and drops it.
    if (typeof call.target === 'string') return null;
    this.refusal = argTypeError(call.target, id, this.defs);
    return this.refusal ? null : argLocal(call.target);
  };

  protected onValue(value: Decoded | typeof SKIPPED): void {
    if (!this.call) {
      // Go's server stops serving a connection whose header it cannot decode.
      if (value === SKIPPED) return this.fail(this.refusal ?? 'rpc: server cannot decode request');
      const header = toRequestHeader(value);
      this.call = { ...header, target: lookupMethod(header.serviceMethod) };
      return;
    }
    const call = this.call;
    this.call = undefined;
    const method = call.target;
    if (typeof method === 'string') return this.answer(call, { ok: false, message: method });
    const refusal = value === SKIPPED ? this.refusal : argValueError(method, value);
    if (refusal !== null || value === SKIPPED)
      return this.answer(call, { ok: false, message: refusal ?? 'gob: cannot decode argument' });
    this.run(method, argPayload(method, value), (answer) => this.answer(call, answer));
  }

  private answer(call: PendingCall, answer: CallOutcome<GoReply>): void {
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
    this.send(...bytes);
  }

  /** Answers a request that is not net/rpc's CONNECT as Go's HTTP server would, then closes. */
  private refuse(response: Buffer, reason: string): void {
    this.options.log(`netrpc ${this.address}: ${reason}; connection closed`);
    this.ending = true;
    this.socket.end(response, () => this.teardown());
    // Should the client never read the answer, the connection still goes.
    setTimeout(() => this.teardown(), 5000).unref();
  }
}
