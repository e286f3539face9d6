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
import { InSyncReplicas, type RecordedMembership } from './in-sync-replicas.js';
import { LeadershipLostError, NotWrittenError } from './ack-errors.js';
import { refusalText } from '../format/refusals.js';

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
  /**
   * Cluster mode: whether this node may act as master right now (it holds the shard's leadership and
   * its lease is proven), and the sentence a refused write gets otherwise. Null outside cluster mode.
   */
  private authority: (() => string | null) | null = null;
  private leading = false;
  /**
   * The acknowledged end last known (as master or from the master): reads below it stay safe while
   * this node neither leads nor follows (between roles, or etcd down), since no rule ever cuts it.
   */
  private knownAcknowledgedEnd = 0;
  /** This node's name in the in-sync set: node_name, or the rpc address (cluster mode sets it). */
  nodeName: string;

  constructor(
    private readonly storage: StorageService,
    private readonly config: ImsConfig,
    private readonly tls: TlsConfig,
    private readonly bounds: InputBounds,
  ) {
    this.nodeName = config.node_name ?? config.rpc_listen;
  }

  /** Step 3: prepare the master's live stream and, when master_address is set, start the slave. */
  async start(): Promise<void> {
    if (!this.master) {
      const c = this.config;
      if (!c.master_address && !c.clusterMode) {
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
        acknowledgedEnd: () => this.readEnd(),
        // Cluster mode: only the leader serves followers (a deposed one may cut its own log back).
        slaveRefusal: () =>
          c.clusterMode && !this.leading ? (this.authority?.() ?? 'not the master') : null,
        incompleteFrameMs: c.incomplete_frame_timeout_ms,
        bounds: this.bounds,
      };
      this.replicas = new InSyncReplicas(
        {
          minInsync: c.min_insync_replicas,
          lagTimeoutMs: c.replica_lag_timeout_ms,
          sendableEnd: () => this.storage.logEnd,
        },
        this.logger,
      );
      this.replicas.start();
      if (c.min_insync_replicas > 0 && !c.master_address && !c.clusterMode) {
        this.replicas.beginTerm(this.storage.logEnd);
        this.storage.setAckGate(this.replicas);
      }
      // Reads answer acknowledged saves only (a master with replicas to wait for, a cluster node, an
      // ims slave whose master reports its acknowledged end); otherwise everything written, as Go.
      this.storage.setReadEnd(() => this.readEnd());
      this.master = new SyncMaster(this.storage, this.logger, options, this.replicas);
      this.master.prepare();
    }
    if (this.config.master_address && !this.slave) {
      this.slave = new SyncSlave(
        this.storage,
        this.config.master_address,
        this.logger,
        this.nodeName,
        this.slaveTlsOptions(),
        this.config.incomplete_frame_timeout_ms,
      );
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

  /**
   * The end below which reads answer: the acknowledged end (Kafka's high watermark). A master computes
   * it from its replicas' acknowledgements; a slave has it from its master; a cluster node between
   * roles keeps the last one it knew.
   */
  readEnd(): number {
    const c = this.config;
    let end: number;
    if (this.slave) {
      const told = this.slave.acknowledgedEnd;
      if (told === null) return c.clusterMode ? this.knownAcknowledgedEnd : Infinity;
      end = told;
    } else if (this.leading || (!c.clusterMode && c.min_insync_replicas > 0)) {
      const local = c.durability === 'sync' ? this.storage.durableEnd : this.storage.logEnd;
      end = this.replicas!.highWatermark(local);
    } else if (c.clusterMode) {
      return this.knownAcknowledgedEnd;
    } else {
      return Infinity;
    }
    if (end > this.knownAcknowledgedEnd) this.knownAcknowledgedEnd = end;
    return end;
  }

  /** A slave presents this server's certificate to its master when TLS is configured. */
  private slaveTlsOptions() {
    return this.tls.material ? clientTlsOptions(this.tls.material) : undefined;
  }

  get isSlave(): boolean {
    return this.slave !== null;
  }

  /** Why this server takes no writes now (a slave, or not the cluster's master), or null. */
  writeRefusal(): string | null {
    if (this.config.master_address) {
      return `read-only replica: this server replicates ${this.config.master_address}; send writes to the master`;
    }
    if (this.authority) return this.leading ? this.authority() : (this.authority() ?? 'not the master');
    // Cluster mode before join(): the role is not known yet, so nothing may be written (or acknowledged).
    return this.config.clusterMode ? refusalText.notJoined() : null;
  }

  // ---- cluster mode: the role is decided by election ---------------------------------------------

  /** Cluster mode: `check` says whether leadership is proven now (null) or why not. */
  setAuthority(check: () => string | null): void {
    this.authority = check;
  }

  /**
   * Follow the shard's master at `syncAddress` (cluster mode). A node that was leading stops taking
   * writes first; its slave link then finds from the epoch histories whether its tail must be cut.
   */
  async follow(syncAddress: string): Promise<void> {
    this.stepDown();
    if (this.slave?.masterAddress === syncAddress) return;
    await this.slave?.stop();
    this.slave = new SyncSlave(
      this.storage,
      syncAddress,
      this.logger,
      this.nodeName,
      this.slaveTlsOptions(),
      this.config.incomplete_frame_timeout_ms,
    );
    this.slave.start();
    this.logger.log(`following master ${syncAddress}, cursor ${this.storage.logEnd}`);
  }

  /** Stops acknowledging as master (leadership lost or not proven): waiting saves fail, none is acked. */
  stepDown(): void {
    if (!this.leading) return;
    this.leading = false;
    this.storage.setAckGate(null);
    // These saves are written but not acknowledged: a different sentence from the refusal of a write
    // that never happened, so that a client does not retry them (a retry could store one twice).
    this.replicas?.failWaiters(new LeadershipLostError(this.authority?.() ?? 'no longer the master'));
    void this.replicas?.setMembership(null);
    // Its followers find the new master; a deposed master's stream could cross a cut of its own log.
    this.master?.dropSlaves('closed: this node is no longer the master');
    this.logger.warn('stepped down: no longer the master');
  }

  /**
   * Become the master (cluster mode, after winning the election): stop following, then begin epoch
   * `epoch` (at least one past every epoch this node has seen) at the log end, before any write.
   */
  async lead(epoch: number, membership: (epoch: number) => RecordedMembership): Promise<number> {
    await this.slave?.stop();
    this.slave = null;
    const begun = this.storage.beginEpoch(epoch);
    const replicas = this.replicas!;
    // Acknowledged, from here on, starts at this log end: a replica joins once it holds it.
    replicas.beginTerm(this.storage.logEnd);
    // The in-sync set is recorded (this node alone at first) before anything is acknowledged.
    await replicas.setMembership(membership(begun));
    const authority = this.authority;
    // Every acknowledgement also proves leadership at that moment: a master that cannot renew its
    // lease stops acknowledging before the lease can expire (and another node can win).
    this.storage.setAckGate({
      admit: () => {
        const refusal = authority?.() ?? null;
        if (refusal) throw new NotWrittenError(refusal);
        if (this.config.min_insync_replicas > 0) replicas.admit();
      },
      whenAcknowledged: async (end) => {
        if (this.config.min_insync_replicas > 0) await replicas.whenAcknowledged(end);
        const refusal = authority?.() ?? null;
        if (refusal) throw new LeadershipLostError(refusal);
      },
    });
    this.leading = true;
    this.logger.log(`leading: master epoch ${begun} begins at ${this.storage.logEnd}`);
    return begun;
  }

  /** Names of the replicas in the in-sync set. */
  inSyncMembers(): string[] {
    return this.replicas?.members() ?? [];
  }

  get isLeading(): boolean {
    return this.leading;
  }

  /** Replication state for /summary and health. */
  status(): ReplicationStatus {
    return {
      role: this.slave || (this.authority && !this.leading) ? 'slave' : 'master',
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
