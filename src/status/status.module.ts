import { Module } from '@nestjs/common';
import { APP_INTERCEPTOR } from '@nestjs/core';
import { TerminusModule } from '@nestjs/terminus';
import { ClusterModule } from '../cluster/cluster.module.js';
import { ReplicationModule } from '../replication/replication.module.js';
import { RpcModule } from '../rpc/rpc.module.js';
import { StorageModule } from '../storage/storage.module.js';
import { BoundAddresses } from './bound-addresses.js';
import { EventLoopMonitor } from './event-loop.monitor.js';
import { HealthController } from './health.controller.js';
import { ListenersHealthIndicator } from './indicators/listeners.health.js';
import { ReplicationHealthIndicator } from './indicators/replication.health.js';
import { EventLoopHealthIndicator } from './indicators/runtime.health.js';
import { StorageHealthIndicator } from './indicators/storage.health.js';
import { DrainOnShutdown, InFlightInterceptor, ShutdownState } from './shutdown.js';
import { StatusController } from './status.controller.js';

/**
 * The operational surface: /summary and /stack, the Kubernetes probes, and the shutdown drain (RPC
 * requests in flight are counted by a global interceptor and waited for before the RPC sockets close).
 * The flush jobs live with the engine in StorageModule.
 */
@Module({
  imports: [
    StorageModule,
    ReplicationModule,
    RpcModule,
    ClusterModule,
    TerminusModule.forRoot({ errorLogStyle: 'pretty' }),
  ],
  controllers: [StatusController, HealthController],
  providers: [
    BoundAddresses,
    ShutdownState,
    DrainOnShutdown,
    { provide: APP_INTERCEPTOR, useClass: InFlightInterceptor },
    EventLoopMonitor,
    EventLoopHealthIndicator,
    StorageHealthIndicator,
    ReplicationHealthIndicator,
    ListenersHealthIndicator,
  ],
  exports: [ShutdownState, BoundAddresses],
})
export class StatusModule {}
