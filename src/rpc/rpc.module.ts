import { Module } from '@nestjs/common';
import { StorageModule } from '../storage/storage.module.js';

/** RPC over the Nest TCP transport (filled in by the Rpc issue). */
@Module({ imports: [StorageModule] })
export class RpcModule {}
