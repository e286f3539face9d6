import * as net from 'node:net';
import * as tls from 'node:tls';
import { Logger } from '@nestjs/common';
import {
  BaseRpcContext,
  Server,
  type CustomTransportStrategy,
  type MessageHandler,
} from '@nestjs/microservices';
import { isObservable, lastValueFrom } from 'rxjs';
import { listenError } from '../../config/setting-error.js';
import type { GorpcMethod, Payload } from './go-types.js';
import { GorpcConnection, type CallOutcome } from './gorpc-connection.js';

/** The context a handler (and the RPC error filter) sees for a gorpc call: the pattern and the caller. */
export class GorpcContext extends BaseRpcContext<[string, string]> {
  getPattern(): string {
    return this.args[0];
  }

  getRemoteAddress(): string {
    return this.args[1];
  }
}

export interface GorpcServerOptions {
  host: string;
  port: number;
  /** The config value, for a listen failure naming gorpc_listen. */
  setting: string;
  /** Largest gob message a client may send (default 4 MiB). */
  maxMessage?: number;
  /** Calls in flight per connection before it stops reading (default 4096). */
  maxInFlight?: number;
  /** Serve TLS (tls_cert/tls_key, and client certificates with tls_ca); Go's gorpc clients speak plain TCP. */
  tlsOptions?: tls.TlsOptions;
  /** Caps connections (max_connections), as on the other listeners. */
  limitConnections?: (server: net.Server) => void;
}

/**
 * GoBelieve's gorpc protocol as a Nest transport: the calls a Go im server makes go to the same
 * @MessagePattern handlers as the Nest TCP transport's, through the same guards, pipes and filters.
 */
export class GorpcServer extends Server implements CustomTransportStrategy {
  private server?: net.Server;
  private readonly connections = new Set<GorpcConnection>();
  private readonly handlers = new Map<string, MessageHandler | null>();
  private readonly log = new Logger('Gorpc');

  constructor(private readonly options: GorpcServerOptions) {
    super();
  }

  listen(callback: (err?: unknown) => void): void {
    const accept = (socket: net.Socket) => {
      const conn = new GorpcConnection(
        socket,
        {
          dispatch: (method, payload, remote) => this.dispatch(method, payload, remote),
          log: (m) => this.log.warn(m),
          maxMessage: this.options.maxMessage ?? 4 << 20,
          maxInFlight: this.options.maxInFlight ?? 4096,
          maxQueuedOutput: 8 << 20,
          handshakeMs: 10_000,
        },
        (c) => this.connections.delete(c),
      );
      this.connections.add(conn);
    };
    const server = this.options.tlsOptions
      ? tls.createServer(this.options.tlsOptions, accept)
      : net.createServer(accept);
    if (this.options.tlsOptions) {
      server.on('tlsClientError', (err, socket) =>
        this.log.warn(
          `refused a TLS connection from ${socket.remoteAddress}:${socket.remotePort}: ${err.message}`,
        ),
      );
    }
    this.options.limitConnections?.(server);
    const onError = (err: unknown) => callback(listenError('gorpc_listen', this.options.setting, err));
    server.once('error', onError);
    server.listen(this.options.port, this.options.host, () => {
      server.off('error', onError);
      server.on('error', (err) => this.log.error(`gorpc listener: ${err.message}`));
      callback();
    });
    this.server = server;
  }

  /** The address the listener is bound to (the real port when the config asked for port 0). */
  boundAddress(): string | null {
    const a = this.server?.address();
    if (!a) return null;
    return typeof a === 'string' ? a : `${a.address}:${a.port}`;
  }

  close(): Promise<void> {
    for (const c of this.connections) c.teardown();
    const server = this.server;
    if (!server?.listening) return Promise.resolve();
    return new Promise((resolve) => server.close(() => resolve()));
  }

  on(): never {
    throw new Error('the gorpc transport has no events to listen to');
  }

  unwrap<T>(): T {
    return this.server as T;
  }

  private handlerFor(pattern: string): MessageHandler | null {
    let h = this.handlers.get(pattern);
    if (h === undefined) {
      h = this.getHandlerByPattern(pattern);
      this.handlers.set(pattern, h);
    }
    return h;
  }

  private async dispatch(method: GorpcMethod, payload: Payload, remote: string): Promise<CallOutcome> {
    const handler = this.handlerFor(method.pattern);
    if (!handler) return { ok: false, message: `${method.pattern}: no handler` };
    try {
      const result: unknown = await handler(payload, new GorpcContext([method.pattern, remote]));
      const reply = isObservable(result) ? await lastValueFrom(result) : result;
      return { ok: true, reply };
    } catch (err) {
      // The RPC error filter throws {status: 'error', message} with the sentence the Nest transport sends.
      const message = (err as { message?: unknown })?.message;
      return { ok: false, message: typeof message === 'string' ? message : String(err) };
    }
  }
}
