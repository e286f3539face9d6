import { Controller, Get } from '@nestjs/common';
import { HealthCheck, HealthCheckService } from '@nestjs/terminus';
import { ListenersHealthIndicator } from './indicators/listeners.health.js';
import { ReplicationHealthIndicator } from './indicators/replication.health.js';
import { EventLoopHealthIndicator } from './indicators/runtime.health.js';
import { StorageHealthIndicator } from './indicators/storage.health.js';

/** Kubernetes probes: 200 when every check is up, 503 (terminus) when one is down. */
@Controller('health')
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly eventLoop: EventLoopHealthIndicator,
    private readonly storage: StorageHealthIndicator,
    private readonly replication: ReplicationHealthIndicator,
    private readonly listeners: ListenersHealthIndicator,
  ) {}

  /** Liveness: the process answers and its event loop is not wedged. Storage trouble is not a reason to restart. */
  @Get('live')
  @HealthCheck()
  live() {
    return this.health.check([() => this.eventLoop.check('event_loop')]);
  }

  /** Readiness: every listener bound, storage open and writable, last fsync good, disk space left, a slave linked to its master. */
  @Get('ready')
  @HealthCheck()
  ready() {
    return this.health.check([
      () => this.listeners.check('listeners'),
      () => this.storage.checkWritable('storage'),
      () => this.storage.checkDisk('disk'),
      () => this.replication.check('replication'),
    ]);
  }
}
