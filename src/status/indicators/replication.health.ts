import { Injectable } from '@nestjs/common';
import { HealthIndicatorService } from '@nestjs/terminus';
import { ClusterService } from '../../cluster/cluster.service.js';
import { ImsConfig } from '../../config/ims-config.js';
import { ReplicationService, type ReplicationStatus } from '../../replication/replication.service.js';

export interface ReplicationView extends ReplicationStatus {
  /** A slave: whether it is linked to its master now (absent on a master). */
  linked?: boolean;
}

/** Replication state for /summary, and the readiness part "a slave is linked to its master". */
@Injectable()
export class ReplicationHealthIndicator {
  constructor(
    private readonly health: HealthIndicatorService,
    private readonly replication: ReplicationService,
    private readonly config: ImsConfig,
    private readonly cluster: ClusterService,
  ) {}

  view(): ReplicationView {
    const status = this.replication.status();
    // The role is the config's: a slave that has not started its link yet is still a slave.
    const role = this.config.isSlave ? 'slave' : 'master';
    return role === 'slave'
      ? { ...status, role, linked: status.slave?.connected === true }
      : { ...status, role };
  }

  /**
   * Up on a master (with enough in-sync replicas); on a slave, up only while it is linked to its master.
   * In cluster mode: the master while its lease is proven and enough replicas are in sync; a follower
   * while it is linked to the current master.
   */
  check(key: string) {
    const session = this.health.check(key);
    const c = this.cluster.status();
    if (c) {
      const details = {
        role: c.role,
        cluster: c.cluster,
        shard: c.shard,
        epoch: c.epoch,
        master: c.master?.node ?? null,
      };
      if (c.role === 'master') {
        const problem = this.replication.writeRefusal() ?? this.replication.ackProblem();
        return problem ? session.down({ ...details, message: problem }) : session.up(details);
      }
      const link = this.replication.status().slave;
      if (!c.master) return session.down({ ...details, message: `shard ${c.shard} has no master` });
      if (!link?.connected) {
        return session.down({
          ...details,
          message: `not linked to master ${c.master.node}${link?.lastError ? ` (${link.lastError})` : ''}`,
        });
      }
      return session.up({ ...details, caughtUp: link.caughtUp, lagBytes: link.lagBytes });
    }
    const view = this.view();
    if (view.role === 'master') {
      const details = {
        role: 'master',
        epoch: view.epoch,
        slaves: view.master.slaves.length,
        inSyncReplicas: view.master.inSyncReplicas,
        minInsyncReplicas: view.master.minInsyncReplicas,
      };
      // Saves cannot be acknowledged: the pod must not take writes (readiness), though it is alive.
      const problem = this.replication.ackProblem();
      return problem ? session.down({ ...details, message: problem }) : session.up(details);
    }
    const master = this.config.master_address;
    if (!view.linked) {
      const why = view.slave?.lastError ? ` (${view.slave.lastError})` : '';
      return session.down({ role: 'slave', message: `not linked to master ${master}${why}` });
    }
    return session.up({
      role: 'slave',
      master,
      masterEpoch: view.slave?.masterEpoch ?? null,
      caughtUp: view.slave?.caughtUp ?? false,
      lagBytes: view.slave?.lagBytes ?? null,
      lagMs: view.slave?.lagMs ?? 0,
    });
  }
}
