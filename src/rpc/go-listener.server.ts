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
import { listenError } from '../config/setting-error.js';
import { reportTlsFailures } from '../config/tls-options.js';
import type { ConnectionBounds, GoConnectionOptions } from './go-connection.js';

/**
 * The context a handler (and the RPC error filter) sees for a call that came over a Go protocol: the
 * pattern and the caller.
 */
export class GoCallContext extends BaseRpcContext<[string, string]> {
  getPattern(): string {
    return this.args[0];
  }

  getRemoteAddress(): string {
    return this.args[1];
  }
}

/** What the Nest handler made of one call (`R`: its reply, or the Go value made of it). */
export type CallOutcome<R = unknown> = { ok: true; reply: R } | { ok: false; message: string };

export interface GoListenerOptions {
  host: string;
  port: number;
  /** The config value, for a listen failure naming the key. */
  setting: string;
  /** Serve TLS (tls_cert/tls_key, and client certificates with tls_ca), as the other listeners do. */
  tlsOptions?: tls.TlsOptions;
  /** Caps connections (max_connections), as on the other listeners. */
  limitConnections?: (server: net.Server) => void;
  /** Calls in flight per connection before it stops reading (default 4096). */
  maxInFlight?: number;
  /** An unfinished gob message that receives nothing this long is dropped (incomplete_frame_timeout_ms). */
  stallMs?: number;
  /** The process's input budget (max_pending_bytes) and drop counters (InputBounds). */
  bounds?: ConnectionBounds;
}

/** One accepted connection, as the listener keeps it: closed when the listener closes. */
export interface GoConnection {
  teardown(): void;
}

/**
 * A Nest transport for one of the protocols Go im servers call their storage with (gorpc, net/rpc):
 * the listener (TCP or TLS, connection cap), and the way a decoded call reaches the same
 * @MessagePattern handlers as the Nest TCP transport's, through the same guards, pipes and filters.
 * A subclass supplies the protocol: what a new connection is.
 */
export abstract class GoListenerServer extends Server implements CustomTransportStrategy {
  private server?: net.Server;
  private readonly connections = new Set<GoConnection>();
  private readonly handlers = new Map<string, MessageHandler | null>();
  protected readonly log: Logger;

  /**
   * @param key the config key (`gorpc_listen`), named by a listen failure
   * @param label how log lines name the protocol (`gorpc`)
   */
  constructor(
    protected readonly options: GoListenerOptions,
    private readonly key: string,
    protected readonly label: string,
    loggerContext: string,
  ) {
    super();
    this.log = new Logger(loggerContext);
  }

  /** Wraps a new socket in the protocol's connection; `closed` must be called when it ends. */
  protected abstract accept(socket: net.Socket, closed: (c: GoConnection) => void): GoConnection;

  listen(callback: (err?: unknown) => void): void {
    const onSocket = (socket: net.Socket) => {
      this.connections.add(this.accept(socket, (c) => this.connections.delete(c)));
    };
    const server = this.options.tlsOptions
      ? tls.createServer(this.options.tlsOptions, onSocket)
      : net.createServer(onSocket);
    if (this.options.tlsOptions) {
      reportTlsFailures(server as tls.Server, (peer, cause) =>
        this.log.warn(`refused a TLS connection from ${peer}: ${cause}`),
      );
    }
    this.options.limitConnections?.(server);
    const onError = (err: unknown) => callback(listenError(this.key, this.options.setting, err));
    server.once('error', onError);
    server.listen(this.options.port, this.options.host, () => {
      server.off('error', onError);
      server.on('error', (err) => this.log.error(`${this.label} listener: ${err.message}`));
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
    throw new Error(`the ${this.label} transport has no events to listen to`);
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

  /** What a new connection is given, whatever the protocol. */
  protected connectionOptions(maxMessage: number): GoConnectionOptions {
    return {
      dispatch: (pattern, payload, remote) => this.dispatch(pattern, payload, remote),
      log: (m) => this.log.warn(m),
      maxMessage,
      maxInFlight: this.options.maxInFlight ?? 4096,
      maxQueuedOutput: 8 << 20,
      handshakeMs: 10_000,
      ...(this.options.stallMs !== undefined ? { stallMs: this.options.stallMs } : {}),
      ...(this.options.bounds ? { bounds: this.options.bounds } : {}),
    };
  }

  /** Runs one call through the Nest handler of `pattern`. */
  protected async dispatch(pattern: string, payload: unknown, remote: string): Promise<CallOutcome> {
    const handler = this.handlerFor(pattern);
    if (!handler) return { ok: false, message: `${pattern}: no handler` };
    try {
      const result: unknown = await handler(payload, new GoCallContext([pattern, remote]));
      const reply = isObservable(result) ? await lastValueFrom(result) : result;
      return { ok: true, reply };
    } catch (err) {
      // The RPC error filter throws {status: 'error', message} with the sentence the Nest transport sends.
      const message = (err as { message?: unknown })?.message;
      return { ok: false, message: typeof message === 'string' ? message : String(err) };
    }
  }
}
