import type * as net from 'node:net';
import { GoListenerServer, type GoConnection, type GoListenerOptions } from '../go-listener.server.js';
import { GorpcConnection } from './gorpc-connection.js';

export interface GorpcServerOptions extends GoListenerOptions {
  /** Largest gob message a client may send (max_frame_bytes; default 4 MiB). */
  maxMessage?: number;
}

/**
 * GoBelieve's gorpc protocol as a Nest transport: the calls a Go im server makes go to the same
 * @MessagePattern handlers as the Nest TCP transport's, through the same guards, pipes and filters.
 */
export class GorpcServer extends GoListenerServer {
  constructor(private readonly gorpcOptions: GorpcServerOptions) {
    super(gorpcOptions, 'gorpc_listen', 'gorpc', 'Gorpc');
  }

  protected accept(socket: net.Socket, closed: (c: GoConnection) => void): GoConnection {
    return new GorpcConnection(
      socket,
      this.connectionOptions(this.gorpcOptions.maxMessage ?? 4 << 20),
      closed,
    );
  }
}
