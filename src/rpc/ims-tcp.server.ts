import type { AddressInfo } from 'node:net';
import { ServerTCP, type TcpOptions } from '@nestjs/microservices';

/**
 * Nest's TCP transport with one change: a pattern that is exactly the name of a registered handler is
 * routed at once. The stock server first tries JSON.parse on every incoming pattern, and for a plain
 * name such as "SavePeerMessage" that throws and catches a SyntaxError on every request (about a tenth
 * of the server's CPU at full load). Object patterns and unknown names still take the stock path.
 */
export class ImsTcpServer extends ServerTCP {
  constructor(options: TcpOptions['options']) {
    super(options ?? {});
  }

  override getRouteFromPattern(pattern: string): string {
    if (this.messageHandlers.has(pattern)) return pattern;
    return super.getRouteFromPattern(pattern);
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
