import type * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import type * as tls from 'node:tls';
import { Logger } from '@nestjs/common';
import { ServerTCP, type TcpSocket } from '@nestjs/microservices';
import { reportTlsFailures } from '../config/tls-options.js';
import { BoundedJsonSocket } from './bounded-json-socket.js';
import type { InputBounds } from './input-bounds.js';

export interface ImsTcpServerOptions {
  host: string;
  port: number;
  /** Serve TLS with these options (tls.createServer); plain TCP without. */
  tlsOptions?: tls.TlsOptions;
  /** Frame size, pending-bytes budget and connection limit; Nest's defaults without (unit tests). */
  bounds?: InputBounds;
  /** An unfinished frame that receives nothing for this long is dropped. */
  incompleteFrameTimeoutMs?: number;
}

/**
 * Nest's TCP transport with these changes:
 * - a pattern that is exactly the name of a registered handler is routed at once. The stock server first
 *   tries JSON.parse on every incoming pattern, and for a plain name such as "SavePeerMessage" that throws
 *   and catches a SyntaxError on every request (about a tenth of the server's CPU at full load). Object
 *   patterns and unknown names still take the stock path;
 * - every connection's input is bounded (BoundedJsonSocket, InputBounds) and max_connections applies.
 */
export class ImsTcpServer extends ServerTCP {
  private readonly bounds: InputBounds | undefined;
  private readonly incompleteFrameTimeoutMs: number;

  constructor(options: ImsTcpServerOptions) {
    const { bounds, incompleteFrameTimeoutMs, ...tcp } = options;
    super(tcp);
    this.bounds = bounds;
    this.incompleteFrameTimeoutMs = incompleteFrameTimeoutMs ?? 30_000;
    const server = this.server as unknown as net.Server;
    if (bounds) bounds.limitConnections(server, 'rpc');
    if (tcp.tlsOptions) {
      const logger = new Logger('Rpc');
      // A refused client (no certificate, another CA) is worth a line: it is either misconfigured or probing.
      reportTlsFailures(server as tls.Server, (peer, cause) =>
        logger.warn(`rpc: TLS handshake with ${peer} failed: ${cause}`),
      );
    }
  }

  protected override getSocketInstance(socket: net.Socket): TcpSocket {
    if (!this.bounds) return super.getSocketInstance(socket);
    return new BoundedJsonSocket(socket, this.bounds, this.incompleteFrameTimeoutMs);
  }

  override getRouteFromPattern(pattern: string): string {
    if (this.messageHandlers.has(pattern)) return pattern;
    return super.getRouteFromPattern(pattern);
  }

  /**
   * Stock listen() hands only EADDRINUSE and ECONNREFUSED to the callback: any other failure
   * (EADDRNOTAVAIL for a host this machine does not have, EACCES for a privileged port) left start-up
   * waiting for ever with the other listeners up. Every failure before the socket listens is reported.
   */
  override listen(callback: (err?: unknown) => void): void {
    const server = this.server;
    const onError = (err: Error) => callback(err);
    server.once('error', onError);
    server.listen(this.port, this.host, () => {
      server.off('error', onError);
      callback();
    });
  }

  /** The address the listener is bound to (the real port when the config asked for port 0). */
  boundAddress(): string | null {
    const a = (this.server as unknown as { address?: () => AddressInfo | string | null })?.address?.();
    if (!a) return null;
    return typeof a === 'string' ? a : `${a.address}:${a.port}`;
  }

  /**
   * A listen failure (port in use, …) is reported once by the start-up sequence, naming rpc_listen;
   * the stock server would also log it here with a stack trace.
   */
  protected override handleError(error: unknown): void {
    if ((error as NodeJS.ErrnoException)?.syscall === 'listen') return;
    super.handleError(error as string);
  }
}
