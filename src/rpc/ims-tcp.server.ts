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
}
