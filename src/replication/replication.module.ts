import { Module } from '@nestjs/common';
import { StorageModule } from '../storage/storage.module.js';
import { ReplicationService } from './replication.service.js';

/** Master (serves slaves on sync_listen) and slave (follows master_address). */
@Module({ imports: [StorageModule], providers: [ReplicationService], exports: [ReplicationService] })
export class ReplicationModule {}
