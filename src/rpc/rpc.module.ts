import { Module } from '@nestjs/common';
import { ReplicationModule } from '../replication/replication.module.js';
import { StorageModule } from '../storage/storage.module.js';
import { RpcValidationPipe } from './rpc-validation.pipe.js';
import { RpcCountersService } from './rpc-counters.service.js';
import { RpcController, RequestCountGuard, WritableGuard } from './rpc.controller.js';

/**
 * RPC over the Nest TCP transport (main.ts connects the microservice on rpc_listen). Validation, error
 * mapping and counting are bound on the controller, so they apply to the microservice whatever the
 * app-level configuration is.
 */
@Module({
  imports: [StorageModule, ReplicationModule],
  controllers: [RpcController],
  providers: [RpcCountersService, RequestCountGuard, WritableGuard, RpcValidationPipe],
  exports: [RpcCountersService],
})
export class RpcModule {}
