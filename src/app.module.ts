import { Module, type DynamicModule } from '@nestjs/common';
import { ConfigModule } from './config/config.module.js';
import type { ImsConfig } from './config/ims-config.js';
import { ReplicationModule } from './replication/replication.module.js';
import { RpcModule } from './rpc/rpc.module.js';
import { StatusModule } from './status/status.module.js';
import { StorageModule } from './storage/storage.module.js';

@Module({})
export class AppModule {
  static forConfig(config: ImsConfig): DynamicModule {
    return {
      module: AppModule,
      imports: [ConfigModule.forConfig(config), StorageModule, ReplicationModule, StatusModule, RpcModule],
    };
  }
}
