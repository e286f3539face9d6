/**
 * What the Node clients of both Go protocols (gorpc, net/rpc) share: the calls in flight on one
 * connection, matched to their answers by id, all failed at once when the connection fails.
 */
import type * as net from 'node:net';
import { GobStreamDecoder, GobStreamEncoder, type GobValue } from './gob/gob.js';

interface Pending {
  resolve: (v: GobValue) => void;
  reject: (e: Error) => void;
}

export abstract class GoCallClient {
  protected readonly enc = new GobStreamEncoder();
  private readonly dec: GobStreamDecoder;
  private readonly pending = new Map<bigint, Pending>();
  protected failure?: Error;

  /** `replyNames`: the interface type names the server's answers may carry. */
  protected constructor(
    readonly socket: net.Socket,
    replyNames: ReadonlySet<string>,
  ) {
    this.dec = new GobStreamDecoder({ maxMessage: 64 << 20, names: replyNames });
    socket.setNoDelay(true);
    socket.on('error', (e) => this.fail(e));
    socket.on('close', () => this.fail(new Error('connection closed')));
  }

  /** The server's gob stream: each value read goes to `onValue`. */
  protected onBytes(chunk: Buffer): void {
    this.dec.push(chunk);
    try {
      for (let v = this.dec.next(); v !== undefined; v = this.dec.next()) this.onValue(v);
    } catch (err) {
      this.fail(err as Error);
    }
  }

  /** Throws for a value that is not what the protocol answers. */
  protected abstract onValue(v: GobValue): void;

  /** The answer to call `id`, whose bytes `send` puts on the wire. */
  protected expect(id: bigint, send: () => void): Promise<GobValue> {
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      send();
    });
  }

  /** The call an answer (`what`) is for, no longer pending; throws when no call has that id. */
  protected answered(id: bigint | undefined, what: string): Pending {
    const p = id === undefined ? undefined : this.pending.get(id);
    if (!p || id === undefined) throw new Error(`${what} for unknown call ${id}`);
    this.pending.delete(id);
    return p;
  }

  protected fail(err: Error): void {
    if (!this.failure) this.failure = err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    this.socket.destroy();
  }

  get inFlight(): number {
    return this.pending.size;
  }

  close(): void {
    this.failure ??= new Error('client closed');
    this.socket.end();
    this.socket.destroy();
  }
}
