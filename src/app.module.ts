import { Module, type DynamicModule } from '@nestjs/common';
import { ScheduleModule } from '@nestjs/schedule';
import { ClusterModule } from './cluster/cluster.module.js';
import { ConfigModule } from './config/config.module.js';
import type { ImsConfig } from './config/ims-config.js';
import { MetricsModule } from './metrics/metrics.module.js';
import { ReplicationModule } from './replication/replication.module.js';
import { RpcModule } from './rpc/rpc.module.js';
import { StatusModule } from './status/status.module.js';
import { StorageModule } from './storage/storage.module.js';

@Module({})
export class AppModule {
  static forConfig(config: ImsConfig): DynamicModule {
    return {
      module: AppModule,
      imports: [
        ConfigModule.forConfig(config),
        // The @Interval flush jobs (StorageModule's FlushJobs) start at app.init() and stop at shutdown.
        ScheduleModule.forRoot(),
        StorageModule,
        ReplicationModule,
        StatusModule,
        RpcModule,
        ClusterModule,
        MetricsModule,
      ],
    };
  }
}
