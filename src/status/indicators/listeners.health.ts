import { Injectable } from '@nestjs/common';
import { HealthIndicatorService } from '@nestjs/terminus';
import { BoundAddresses } from '../bound-addresses.js';

/** Readiness part: every listener the config names is bound (start-up has finished binding). */
@Injectable()
export class ListenersHealthIndicator {
  constructor(
    private readonly health: HealthIndicatorService,
    private readonly bound: BoundAddresses,
  ) {}

  check(key: string) {
    const session = this.health.check(key);
    const { rpc, sync, http, gorpc, netrpc } = this.bound;
    const data = { rpc, sync, http, gorpc, netrpc };
    if (!this.bound.allBound)
      return session.down({ ...data, message: 'starting: not every listener is bound yet' });
    return session.up(data);
  }
}
