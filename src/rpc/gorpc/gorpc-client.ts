/**
 * A gorpc client in Node, built from the same gob codec: what the tests and the benchmark use to talk
 * to ims as a Go im server does (handshake byte, gob-encoded wireRequest/wireResponse, optional deflate,
 * many calls in flight on one connection).
 */
import * as net from 'node:net';
import * as zlib from 'node:zlib';
import { GobStreamEncoder, GobStruct, type GobInterface, type GobValue } from '../gob/gob.js';
import { GoCallClient } from '../go-client.js';
import { WriteBatch } from '../write-batch.js';
import { DispatcherRequest, REPLY_NAMES, REQUEST_TYPES, WireRequest } from './go-types.js';

/** An error the server returned for one call (dispatcherResponse.Error or wireResponse.Error). */
export class GorpcCallError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GorpcCallError';
  }
}

/** The bytes of one call as Go's gorpc DispatcherClient sends them (after earlier calls on `enc`). */
export function encodeCall(
  enc: GobStreamEncoder,
  id: bigint | number,
  method: string,
  requestName: string,
  request: Record<string, unknown>,
): Buffer {
  const rt = REQUEST_TYPES.find((t) => t.goName === requestName);
  if (!rt) throw new Error(`unknown request type ${requestName}`);
  return enc.encode(WireRequest, {
    ID: id,
    Request: {
      name: '*gorpc.dispatcherRequest',
      type: DispatcherRequest,
      value: { Request: { name: requestName, type: rt.type, value: request }, Name: `.${method}` },
    },
  });
}

/** The Go request type each ims method takes. */
export const REQUEST_NAME_OF: Record<string, string> = {
  SavePeerMessage: '*main.PeerMessage',
  SaveGroupMessage: '*main.GroupMessage',
  SavePeerGroupMessage: '*main.PeerGroupMessage',
  SyncMessage: '*main.SyncHistory',
  SyncGroupMessage: '*main.SyncGroupHistory',
  GetNewCount: '*main.SyncHistory',
  GetLatestMessage: '*main.HistoryRequest',
};

export class GorpcClient extends GoCallClient {
  private nextId = 1n;
  private readonly deflate?: zlib.DeflateRaw;
  // Calls made in the same tick go out in one write (and one deflate flush), as gorpc batches them.
  private readonly calls = new WriteBatch((data) => {
    if (this.failure) return;
    if (this.deflate) {
      this.deflate.write(data);
      this.deflate.flush(zlib.constants.Z_SYNC_FLUSH);
    } else this.socket.write(data);
  });

  private constructor(socket: net.Socket, compress: boolean) {
    super(socket, REPLY_NAMES);
    socket.write(Buffer.from([compress ? 1 : 0]));
    if (compress) {
      this.deflate = zlib.createDeflateRaw({ level: 1 });
      this.deflate.pipe(socket);
      const inflate = zlib.createInflateRaw();
      socket.pipe(inflate);
      inflate.on('data', (chunk: Buffer) => this.onBytes(chunk));
      inflate.on('error', (e) => this.fail(e));
    } else socket.on('data', (chunk: Buffer) => this.onBytes(chunk));
  }

  static connect(host: string, port: number, options: { compress?: boolean } = {}): Promise<GorpcClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, host);
      s.once('error', reject);
      s.once('connect', () => {
        s.off('error', reject);
        resolve(new GorpcClient(s, options.compress ?? false));
      });
    });
  }

  /** Calls `method` with a request struct given by Go field names; resolves to the reply value. */
  call(
    method: string,
    request: Record<string, unknown>,
    requestName = REQUEST_NAME_OF[method],
  ): Promise<GobValue> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    const bytes = encodeCall(this.enc, id, method, requestName, request);
    return this.expect(id, () => this.calls.push(bytes));
  }

  protected onValue(v: GobValue): void {
    if (!(v instanceof GobStruct)) throw new Error('reply is not a wireResponse');
    const p = this.answered(v.fields.get('ID') as bigint | undefined, 'reply');
    const wireErr = v.fields.get('Error') as string | undefined;
    if (wireErr) return p.reject(new GorpcCallError(wireErr));
    const resp = v.fields.get('Response') as GobInterface | null | undefined;
    const inner = resp?.value;
    if (!(inner instanceof GobStruct)) return p.reject(new Error('reply is not a dispatcherResponse'));
    const err = inner.fields.get('Error') as string | undefined;
    if (err) return p.reject(new GorpcCallError(err));
    const r = inner.fields.get('Response') as GobInterface | null | undefined;
    p.resolve(r ? r.value : null);
  }
}
