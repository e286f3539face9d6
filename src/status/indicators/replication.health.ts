import { Injectable } from '@nestjs/common';
import { HealthIndicatorService } from '@nestjs/terminus';
import { ImsConfig } from '../../config/ims-config.js';
import { ReplicationService } from '../../replication/replication.service.js';

export interface ReplicationView {
  role: 'master' | 'slave';
  /** A slave: whether it is linked to its master now (undefined on a master). */
  linked?: boolean;
  [detail: string]: unknown;
}

/** What ReplicationService.status() reports, when it reports anything. */
type ReplicationStatusLike = Record<string, unknown>;

/** Replication state for /summary and readiness; the role comes from the config. */
@Injectable()
export class ReplicationHealthIndicator {
  constructor(
    private readonly health: HealthIndicatorService,
    private readonly replication: ReplicationService,
    private readonly config: ImsConfig,
  ) {}

  view(): ReplicationView {
    const role = this.config.isSlave ? 'slave' : 'master';
    const source = this.replication as unknown as { status?: () => ReplicationStatusLike };
    const status = typeof source.status === 'function' ? source.status() : {};
    const view: ReplicationView = { ...status, role };
    if (role === 'slave') {
      const slave = (status.slave ?? status) as ReplicationStatusLike;
      view.linked = slave.linked === true || slave.connected === true;
      view.master_address = this.config.master_address;
    }
    return view;
  }

  /** Up on a master; on a slave, up only while it is linked to its master. */
  check(key: string) {
    const session = this.health.check(key);
    const view = this.view();
    if (view.role === 'master') return session.up({ role: 'master' });
    if (!view.linked) {
      return session.down({ role: 'slave', message: `not linked to master ${this.config.master_address}` });
    }
    return session.up({ role: 'slave', master: this.config.master_address });
  }
}
