import {
  Injectable,
  Logger,
  type BeforeApplicationShutdown,
  type OnApplicationShutdown,
} from '@nestjs/common';
import { ImsConfig, parseHostPort } from '../config/ims-config.js';
import { clientTlsOptions, serverTlsOptions, TlsConfig } from '../config/tls-options.js';
import { InputBounds } from '../rpc/input-bounds.js';
import { StorageService } from '../storage/storage.service.js';
import { SyncMaster, type SlaveStatus, type SyncMasterOptions } from './sync-master.js';
import { SyncSlave, type SlaveLinkStatus } from './sync-slave.js';
import { InSyncReplicas } from './in-sync-replicas.js';

export interface ReplicationStatus {
  role: 'master' | 'slave';
  /** This node's newest epoch (a master's own; a slave's, its master's as last heard). */
  epoch: number;
  /** This server as a master: where it listens, the slaves it serves, the in-sync set. */
  master: {
    listening: string | null;
    slaves: SlaveStatus[];
    minInsyncReplicas: number;
    inSyncReplicas: number;
  };
  /** This server as a slave (null without master_address). */
  slave: SlaveLinkStatus | null;
}

/** Master (always, on sync_listen) and slave (when master_address is set). */
@Injectable()
export class ReplicationService implements BeforeApplicationShutdown, OnApplicationShutdown {
  private readonly logger = new Logger('Replication');
  private master: SyncMaster | null = null;
  private slave: SyncSlave | null = null;
  private replicas: InSyncReplicas | null = null;
  private closing: Promise<void> | null = null;

  constructor(
    private readonly storage: StorageService,
    private readonly config: ImsConfig,
    private readonly tls: TlsConfig,
    private readonly bounds: InputBounds,
  ) {}

  /** Step 3: prepare the master's live stream and, when master_address is set, start the slave. */
  async start(): Promise<void> {
    if (!this.master) {
      const c = this.config;
      if (!c.master_address) {
        // Every start of a master begins a new epoch, recorded before any write: a slave that holds
        // records this master lost (an un-fsynced tail) finds where the logs part and cuts its own back.
        const epoch = this.storage.beginEpoch();
        this.logger.log(`master epoch ${epoch} begins at ${this.storage.logEnd}`);
      }
      const options: SyncMasterOptions = {
        liveBatchDelayMs: c.sync_live_batch_delay_ms,
        stallTimeoutMs: c.sync_stall_timeout_ms,
        maxLiveLagBytes: c.sync_max_live_lag_bytes || 4 * c.block_size,
        handshakeTimeoutMs: 10_000,
        durableOnly: c.durability === 'sync',
        heartbeatMs: c.sync_heartbeat_ms,
        epoch: () => ({ epoch: this.storage.latestEpoch, history: this.storage.epochHistory() }),
        tls: this.tls.material ? serverTlsOptions(this.tls.material) : undefined,
        limitConnections: (server) => this.bounds.limitConnections(server, 'sync'),
      };
      this.replicas = new InSyncReplicas(
        {
          minInsync: c.min_insync_replicas,
          lagTimeoutMs: c.replica_lag_timeout_ms,
          sendableEnd: () => this.master?.sendableEnd() ?? this.storage.logEnd,
        },
        this.logger,
      );
      this.replicas.start();
      if (c.min_insync_replicas > 0 && !c.master_address) this.storage.setAckGate(this.replicas);
      this.master = new SyncMaster(this.storage, this.logger, options, this.replicas);
      this.master.prepare();
    }
    if (this.config.master_address && !this.slave) {
      const tlsOptions = this.tls.material ? clientTlsOptions(this.tls.material) : undefined;
      this.slave = new SyncSlave(this.storage, this.config.master_address, this.logger, tlsOptions);
      this.slave.start();
      this.logger.log(`slave of ${this.config.master_address}, cursor ${this.storage.logEnd}`);
    }
  }

  /** Step 8: accept slaves on sync_listen. Returns the bound address (the real port for port 0). */
  async listen(): Promise<string> {
    if (!this.master) await this.start();
    const { host, port } = parseHostPort(this.config.sync_listen);
    await this.master!.listen(host, port);
    const bound = this.master!.address!;
    this.logger.log(`sync listening on ${bound}`);
    return bound;
  }

  get isSlave(): boolean {
    return this.slave !== null;
  }

  /** Replication state for /summary and health. */
  status(): ReplicationStatus {
    return {
      role: this.slave ? 'slave' : 'master',
      epoch: this.storage.isOpen ? this.storage.latestEpoch : 0,
      master: {
        listening: this.master?.address ?? null,
        slaves: this.master?.slaves() ?? [],
        minInsyncReplicas: this.config.min_insync_replicas,
        inSyncReplicas: this.replicas?.inSyncCount ?? 0,
      },
      slave: this.slave?.status() ?? null,
    };
  }

  /** Why saves cannot be acknowledged now (too few in-sync replicas), or null. */
  ackProblem(): string | null {
    if (this.slave || !this.replicas || this.config.min_insync_replicas === 0) return null;
    try {
      this.replicas.admit();
      return null;
    } catch (err) {
      return (err as Error).message;
    }
  }

  /** Closes the links before storage closes (storage closes in onApplicationShutdown). */
  beforeApplicationShutdown(): Promise<void> {
    this.closing ??= (async () => {
      this.storage.setAckGate(null);
      this.replicas?.stop();
      await this.slave?.stop();
      await this.master?.close();
    })();
    return this.closing;
  }

  onApplicationShutdown(): Promise<void> {
    return this.beforeApplicationShutdown();
  }
}
