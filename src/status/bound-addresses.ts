import { Injectable } from '@nestjs/common';

/**
 * Where this process's listeners are bound, as the kernel reports it. A config may say port 0 (tests,
 * several servers on one host): these are then the real ports, logged at start-up and shown in /summary.
 */
@Injectable()
export class BoundAddresses {
  rpc: string | null = null;
  sync: string | null = null;
  http: string | null = null;
  gorpc: string | null = null;
  netrpc: string | null = null;
  /**
   * Every configured listener is bound. Readiness waits for it: HTTP listens first, so without it a
   * probe could see 200 while the RPC port is not (or never will be) open.
   */
  allBound = false;
}
