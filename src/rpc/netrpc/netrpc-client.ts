/**
 * A Go-style net/rpc client in Node, built from the same gob codec: what the tests use to talk to ims as
 * the newest Go im server does (`rpc.DialHTTP`, then `client.Call("RPCStorage.X", &arg, &reply)`): the
 * HTTP CONNECT handshake, a gob `Request{ServiceMethod, Seq}` header and the argument per call, Seq
 * counting from 0, many calls in flight on one connection, answers matched by Seq.
 */
import * as net from 'node:net';
import * as tls from 'node:tls';
import { GobStreamEncoder, GobStruct, type GobValue, type GoType } from '../gob/gob.js';
import { GoCallClient } from '../go-client.js';
import { RPC_PATH } from './http-connect.js';
import { NETRPC_METHODS, Request, SERVICE, argType } from './netrpc-types.js';

/** The error string the server returned for one call (Response.Error). */
export class NetrpcCallError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NetrpcCallError';
  }
}

/** What `rpc.DialHTTP` sends first. */
export const CONNECT_REQUEST = Buffer.from(`CONNECT ${RPC_PATH} HTTP/1.0\n\n`, 'latin1');
/** The status Go's client insists on. */
const CONNECTED_STATUS = 'HTTP/1.0 200 Connected to Go RPC';

/** The bytes of one call as Go's client sends them (after earlier calls on `enc`): header, then argument. */
export function encodeCall(
  enc: GobStreamEncoder,
  seq: bigint | number,
  serviceMethod: string,
  type: GoType,
  arg: unknown,
): Buffer {
  return Buffer.concat([
    enc.encode(Request, { ServiceMethod: serviceMethod, Seq: seq }),
    enc.encode(type, arg),
  ]);
}

export interface CallOptions {
  /** Call another "Service.Method" than RPCStorage's `method` (to see how the server refuses it). */
  serviceMethod?: string;
  /** Encode the argument as another Go type than the method takes. */
  argType?: GoType;
}

export class NetrpcClient extends GoCallClient {
  private nextSeq = 0n;
  /** The response header whose body comes next. */
  private header?: GobStruct;

  /** `rest`: what arrived after the handshake's answer, already the start of the gob stream. */
  private constructor(socket: net.Socket, rest: Buffer) {
    // net/rpc sends no interface values.
    super(socket, new Set());
    socket.on('data', (chunk: Buffer) => this.onBytes(chunk));
    if (rest.length > 0) this.onBytes(rest);
  }

  /** Dials and makes the CONNECT handshake; rejects with the server's status line when it is not Go's. */
  static async connect(
    host: string,
    port: number,
    options: { tls?: tls.ConnectionOptions } = {},
  ): Promise<NetrpcClient> {
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const s = options.tls
        ? tls.connect({ host, port, ...options.tls }, () => resolve(s))
        : net.connect(port, host, () => resolve(s));
      s.once('error', reject);
    });
    socket.write(CONNECT_REQUEST);
    const rest = await new Promise<Buffer>((resolve, reject) => {
      let got = Buffer.alloc(0);
      const onData = (chunk: Buffer) => {
        got = Buffer.concat([got, chunk]);
        const end = got.indexOf('\n\n');
        if (end < 0) return;
        socket.off('data', onData);
        socket.off('close', onClose);
        const status = got.toString('latin1', 0, got.indexOf('\n'));
        if (status !== CONNECTED_STATUS) {
          socket.destroy();
          reject(new Error(`unexpected HTTP response: ${status}`));
        } else resolve(got.subarray(end + 2));
      };
      const onClose = () => reject(new Error('connection closed during the CONNECT handshake'));
      socket.on('data', onData);
      socket.once('close', onClose);
      socket.once('error', reject);
    });
    return new NetrpcClient(socket, rest);
  }

  /** Calls RPCStorage's `method` with its Go argument (field names as in Go); resolves to the reply. */
  call(method: string, arg: unknown, options: CallOptions = {}): Promise<GobValue> {
    if (this.failure) return Promise.reject(this.failure);
    const m = NETRPC_METHODS.get(method);
    const type = options.argType ?? (m ? argType(m) : undefined);
    if (!type) throw new Error(`no Go type for the argument of ${method}`);
    const seq = this.nextSeq++;
    const bytes = encodeCall(this.enc, seq, options.serviceMethod ?? `${SERVICE}.${method}`, type, arg);
    return this.expect(seq, () => this.socket.write(bytes));
  }

  protected onValue(v: GobValue): void {
    if (!this.header) {
      if (!(v instanceof GobStruct)) throw new Error('response header is not a struct');
      this.header = v;
      return;
    }
    const header = this.header;
    this.header = undefined;
    const seq = (header.fields.get('Seq') as bigint | undefined) ?? 0n;
    const p = this.answered(seq, 'response');
    const error = header.fields.get('Error') as string | undefined;
    if (error) p.reject(new NetrpcCallError(error));
    else p.resolve(v);
  }
}
