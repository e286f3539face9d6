import {
  Injectable,
  Logger,
  type BeforeApplicationShutdown,
  type OnApplicationShutdown,
} from '@nestjs/common';
import { ImsConfig, parseHostPort } from '../config/ims-config.js';
import { StorageService } from '../storage/storage.service.js';
import { SyncMaster, type SlaveStatus, type SyncMasterOptions } from './sync-master.js';
import { SyncSlave, type SlaveLinkStatus } from './sync-slave.js';

export interface ReplicationStatus {
  role: 'master' | 'slave';
  /** This server as a master: where it listens and the slaves it serves. */
  master: { listening: string | null; slaves: SlaveStatus[] };
  /** This server as a slave (null without master_address). */
  slave: SlaveLinkStatus | null;
}

/**
 * Tuning read from the environment (operators rarely need them; tests shorten the timeouts):
 * IMS_SYNC_STALL_TIMEOUT_MS, IMS_SYNC_MAX_LIVE_LAG_BYTES, IMS_SYNC_LIVE_BATCH_DELAY_MS.
 */
function envNumber(name: string, fallback: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  return Number.isFinite(n) && n >= 0 ? n : fallback;
}

/** Master (always, on sync_listen) and slave (when master_address is set). */
@Injectable()
export class ReplicationService implements BeforeApplicationShutdown, OnApplicationShutdown {
  private readonly logger = new Logger('Replication');
  private master: SyncMaster | null = null;
  private slave: SyncSlave | null = null;
  private closing: Promise<void> | null = null;

  constructor(
    private readonly storage: StorageService,
    private readonly config: ImsConfig,
  ) {}

  /** Step 3: prepare the master's live stream and, when master_address is set, start the slave. */
  async start(): Promise<void> {
    if (!this.master) {
      const options: SyncMasterOptions = {
        liveBatchDelayMs: envNumber('IMS_SYNC_LIVE_BATCH_DELAY_MS', 1000),
        stallTimeoutMs: envNumber('IMS_SYNC_STALL_TIMEOUT_MS', 30_000),
        maxLiveLagBytes: envNumber('IMS_SYNC_MAX_LIVE_LAG_BYTES', 4 * this.config.block_size),
        handshakeTimeoutMs: 10_000,
        durableOnly: this.config.durability === 'sync',
      };
      this.master = new SyncMaster(this.storage, this.logger, options);
      this.master.prepare();
    }
    if (this.config.master_address && !this.slave) {
      this.slave = new SyncSlave(this.storage, this.config.master_address, this.logger);
      this.slave.start();
      this.logger.log(`slave of ${this.config.master_address}, cursor ${this.storage.store.nextId}`);
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
      master: { listening: this.master?.address ?? null, slaves: this.master?.slaves() ?? [] },
      slave: this.slave?.status() ?? null,
    };
  }

  /** Closes the links before storage closes (storage closes in onApplicationShutdown). */
  beforeApplicationShutdown(): Promise<void> {
    this.closing ??= (async () => {
      await this.slave?.stop();
      await this.master?.close();
    })();
    return this.closing;
  }

  onApplicationShutdown(): Promise<void> {
    return this.beforeApplicationShutdown();
  }
}
