import { setImmediate as nextTurn } from 'node:timers/promises';
import { Injectable } from '@nestjs/common';
import { HealthIndicatorService } from '@nestjs/terminus';
import { EventLoopMonitor } from '../event-loop.monitor.js';

/** Liveness fails when the event loop stalled this long recently (the server is wedged, restart it). */
export const MAX_EVENT_LOOP_STALL_MS = 10_000;

@Injectable()
export class EventLoopHealthIndicator {
  constructor(
    private readonly health: HealthIndicatorService,
    private readonly monitor: EventLoopMonitor,
  ) {}

  async check(key: string) {
    const session = this.health.check(key);
    const started = performance.now();
    await nextTurn();
    const turnMs = Math.round((performance.now() - started) * 100) / 100;
    const stallMs = this.monitor.recentStallMs;
    const data = { turnMs, recentStallMs: stallMs };
    if (stallMs > MAX_EVENT_LOOP_STALL_MS) {
      return session.down({ ...data, message: `event loop stalled for ${stallMs} ms` });
    }
    return session.up(data);
  }
}
