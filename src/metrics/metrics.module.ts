import { Global, Module } from '@nestjs/common';
import { PrometheusModule } from '@willsoto/nestjs-prometheus';
import { ReplicationModule } from '../replication/replication.module.js';
import { RpcModule } from '../rpc/rpc.module.js';
import { StorageModule } from '../storage/storage.module.js';
import { ImsMetrics } from './ims-metrics.service.js';

/**
 * GET /metrics on the HTTP port: Prometheus text with Node's default metrics (prom-client's
 * collectDefaultMetrics) and ims's own `ims_…` metrics. Global so that the RPC interceptor and error
 * filter can count requests without their modules importing this one.
 */
@Global()
@Module({
  imports: [
    PrometheusModule.register({ path: '/metrics', defaultMetrics: { enabled: true } }),
    StorageModule,
    ReplicationModule,
    RpcModule,
  ],
  providers: [ImsMetrics],
  exports: [ImsMetrics],
})
export class MetricsModule {}
