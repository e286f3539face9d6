import type * as net from 'node:net';
import { GoListenerServer, type GoConnection, type GoListenerOptions } from '../go-listener.server.js';
import { NetrpcConnection } from './netrpc-connection.js';

export interface NetrpcServerOptions extends GoListenerOptions {
  /** Largest gob message a client may send (max_frame_bytes). */
  maxMessage: number;
}

/**
 * Go's net/rpc over HTTP (what `rpc.DialHTTP` speaks; the newest Go ims serves its RPCStorage service
 * so) as a Nest transport: the calls go to the same @MessagePattern handlers as the Nest TCP transport's,
 * through the same guards, pipes and filters.
 */
export class NetrpcServer extends GoListenerServer {
  constructor(private readonly netrpcOptions: NetrpcServerOptions) {
    super(netrpcOptions, 'netrpc_listen', 'netrpc', 'Netrpc');
  }

  protected accept(socket: net.Socket, closed: (c: GoConnection) => void): GoConnection {
    const o = this.netrpcOptions;
    return new NetrpcConnection(
      socket,
      {
        ...this.connectionOptions(o.maxMessage),
        // Go's http server takes heads up to 1 MB; a CONNECT needs a few dozen bytes.
        maxHead: 64 << 10,
      },
      closed,
    );
  }
}
