import { Module } from '@nestjs/common';
import { ReplicationModule } from '../replication/replication.module.js';
import { StorageModule } from '../storage/storage.module.js';
import { ClusterService } from './cluster.service.js';

/** Cluster coordination on etcd (election, fencing); inert unless etcd_endpoints is set. */
@Module({
  imports: [StorageModule, ReplicationModule],
  providers: [ClusterService],
  exports: [ClusterService],
})
export class ClusterModule {}
