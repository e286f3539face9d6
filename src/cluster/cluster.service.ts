/**
 * Cluster mode (etcd_endpoints set): etcd elects each shard's master; message data keeps flowing over
 * ims's own replication. A node checks the shard map and its data folder's identity, registers itself
 * under a lease, and campaigns for its shard (etcd's election recipe). The winner leads with a new epoch,
 * recorded in etcd; the others follow it. The leader proves its leadership by renewing its lease: when
 * it cannot, it stops acknowledging before the lease can expire (so never two masters acknowledge at
 * once), steps down, and follows whoever wins next; its slave link cuts a divergent tail by the epochs.
 */
import { Injectable, Logger, type OnApplicationShutdown } from '@nestjs/common';
import { Etcd3, type Campaign, type Election, type ElectionObserver, type Lease } from 'etcd3';
import { ImsConfig, parseHostPort } from '../config/ims-config.js';
import { SettingError } from '../config/setting-error.js';
import { ReplicationService } from '../replication/replication.service.js';
import { StorageService } from '../storage/storage.service.js';
import { claimDataFolder } from './cluster-identity.js';
import {
  clusterKeys,
  etcdHosts,
  parseLeader,
  parseInSync,
  parseShardMap,
  type LeaderInfo,
  type NodeInfo,
} from './cluster-keys.js';

/** Lease time to live (s): a dead master's leadership ends this long after its last renewal. */
export const LEASE_TTL_S = 3;
/**
 * A leader stops acknowledging this long before its lease could expire, counted from when the last
 * successful renewal was *sent*: clocks of etcd and this process may run at slightly different rates.
 */
const FENCE_MARGIN_MS = 700;

export interface ClusterStatus {
  cluster: string;
  shard: number;
  node: string;
  role: 'master' | 'follower' | 'starting';
  epoch: number;
  master: LeaderInfo | null;
  leaseProvenForMs: number | null;
  /** The in-sync set as recorded in etcd (the master's view; null when it has not been read). */
  inSync: string[] | null;
}

@Injectable()
export class ClusterService implements OnApplicationShutdown {
  private readonly logger = new Logger('Cluster');
  private client: Etcd3 | null = null;
  private nodeLease: Lease | null = null;
  private election: Election | null = null;
  private observer: ElectionObserver | null = null;
  private campaign: Campaign | null = null;
  private info: NodeInfo | null = null;
  private leader: LeaderInfo | null = null;
  private provenUntil = 0;
  private renewSentAt = 0;
  private leading = false;
  private stopped = false;
  private chain: Promise<void> = Promise.resolve();

  constructor(
    private readonly config: ImsConfig,
    private readonly storage: StorageService,
    private readonly replication: ReplicationService,
  ) {}

  get enabled(): boolean {
    return this.config.clusterMode;
  }

  private get keys() {
    return clusterKeys(this.config.cluster_name);
  }

  /** The node name: node_name, or the advertised rpc address. */
  nodeName(rpcAddress: string): string {
    return this.config.node_name ?? rpcAddress;
  }

  /** Checks the shard map and the data folder (before storage is used for anything else). */
  async check(): Promise<void> {
    const c = this.config;
    this.client = new Etcd3({ hosts: etcdHosts(c.etcd_endpoints!), dialTimeout: 3000 });
    let text: string | null;
    try {
      text = await this.client.get(this.keys.shardMap).string();
    } catch (err) {
      throw new SettingError(
        'etcd_endpoints',
        c.etcd_endpoints!,
        `etcd does not answer: ${(err as Error).message}`,
      );
    }
    const map = parseShardMap(text);
    if (!map) {
      throw new SettingError(
        'cluster_name',
        c.cluster_name,
        `etcd has no shard map for this cluster (run: ims cluster init --etcd ${c.etcd_endpoints} --cluster ${c.cluster_name} --shards N)`,
      );
    }
    if (c.shard >= map.shards) {
      throw new SettingError(
        'shard',
        String(c.shard),
        `cluster "${c.cluster_name}" has ${map.shards} shard(s), numbered 0 to ${map.shards - 1}`,
      );
    }
    const problem = claimDataFolder(c.storage_root, { cluster: c.cluster_name, shard: c.shard });
    if (problem) throw new SettingError('storage_root', c.storage_root, problem);
  }

  /** Registers this node and campaigns (after the listeners are bound: their addresses are published). */
  async join(bound: { rpc: string; sync: string; http: string | null }): Promise<void> {
    const c = this.config;
    const client = this.client!;
    // advertise_rpc|sync|http (full host:port, e.g. a proxy's) win over advertise_host + bound port.
    const advertise = (addr: string | null, full: string | undefined) => {
      if (!addr) return null;
      if (full) return full;
      const { port } = parseHostPort(addr);
      const host = c.advertise_host ?? (parseHostPort(addr).host || '127.0.0.1');
      return `${host}:${port}`;
    };
    const rpc = advertise(bound.rpc, c.advertise_rpc)!;
    this.info = {
      node: this.nodeName(rpc),
      rpc,
      sync: advertise(bound.sync, c.advertise_sync)!,
      http: advertise(bound.http, c.advertise_http),
    };
    this.replication.setAuthority(() => this.writeRefusal());
    await this.register();
    this.election = client.election(this.keys.election(c.shard), LEASE_TTL_S);
    this.observer = await this.election.observe();
    this.observer.on('change', (value) => this.serialize(() => this.onLeader(parseLeader(value))));
    this.observer.on('error', (err) => this.logger.warn(`leader observer: ${(err as Error).message}`));
    this.onLeaderNow(parseLeader(this.observer.leader()));
    this.logger.log(
      `joined cluster "${c.cluster_name}" shard ${c.shard} as ${this.info.node} (lease ttl ${LEASE_TTL_S} s)`,
    );
    this.runCampaign();
  }

  /** Publishes this node under a lease; registers again when the lease is lost (after a pause). */
  private async register(): Promise<void> {
    const lease = this.client!.lease(LEASE_TTL_S, { autoKeepAlive: true });
    this.nodeLease = lease;
    lease.on('lost', (err) => {
      if (this.stopped || this.nodeLease !== lease) return;
      this.logger.warn(`node registration lease lost: ${err.message}; registering again`);
      setTimeout(() => {
        this.register().catch((e: Error) => this.logger.warn(`registering again failed: ${e.message}`));
      }, 200).unref();
    });
    await lease.put(this.keys.node(this.config.shard, this.info!.node)).value(JSON.stringify(this.info));
  }

  /** One role change at a time, in order. */
  private serialize(step: () => Promise<void>): void {
    this.chain = this.chain
      .then(step)
      .catch((err: Error) => this.logger.error(`role change failed: ${err.message}`));
  }

  private onLeaderNow(leader: LeaderInfo | null): void {
    this.serialize(() => this.onLeader(leader));
  }

  private async onLeader(leader: LeaderInfo | null): Promise<void> {
    this.leader = leader;
    if (!leader || this.stopped) return;
    if (leader.node === this.info?.node) return;
    // Epoch 0: elected but not yet leading (its epoch not begun): follow once it has proclaimed it, so
    // that the hello a follower gets carries the epoch its records will be written in.
    if (leader.epoch === 0) return;
    this.logger.log(
      `master of shard ${this.config.shard} is ${leader.node} (${leader.rpc}, epoch ${leader.epoch})`,
    );
    this.leading = false;
    // peer_sync_addresses: how this node reaches that peer when it differs from what the peer advertises.
    await this.replication.follow(this.config.peerSyncAddresses.get(leader.node) ?? leader.sync);
  }

  /**
   * Only a node that holds every acknowledged save may lead: with min_insync_replicas ≥ 1, a member of
   * the in-sync set the last master recorded (any node while none is recorded yet).
   */
  private async eligible(): Promise<boolean> {
    if (this.config.min_insync_replicas === 0) return true;
    const isr = parseInSync(await this.client!.get(this.keys.isr(this.config.shard)).string());
    return !isr || isr.members.includes(this.info!.node);
  }

  private runCampaign(): void {
    if (this.stopped) return;
    this.eligible().then(
      (ok) => {
        if (ok) this.startCampaign();
        else setTimeout(() => this.runCampaign(), 300).unref();
      },
      (err: Error) => {
        this.logger.warn(`cannot read the in-sync set: ${err.message}`);
        setTimeout(() => this.runCampaign(), 500).unref();
      },
    );
  }

  private startCampaign(): void {
    if (this.stopped) return;
    const campaign = this.election!.campaign(JSON.stringify({ ...this.info!, epoch: 0 }));
    this.campaign = campaign;
    const lease = (campaign as unknown as { lease: Lease }).lease;
    lease.on('keepaliveFired', () => (this.renewSentAt = Date.now()));
    lease.on('keepaliveSucceeded', () => {
      this.provenUntil = this.renewSentAt + LEASE_TTL_S * 1000;
    });
    const grantedFrom = Date.now();
    campaign.on('elected', () =>
      this.serialize(async () => {
        // The lease was granted after grantedFrom: leadership is proven at least until then + ttl.
        this.provenUntil = Math.max(this.provenUntil, grantedFrom + LEASE_TTL_S * 1000);
        try {
          await this.onElected(campaign);
        } catch (err) {
          // Elected but unable to lead: give the leadership back so that another node can take it.
          this.logger.error(`could not take over as master: ${(err as Error).message}; resigning`);
          this.leading = false;
          this.replication.stepDown();
          if (this.campaign === campaign) this.campaign = null;
          await campaign.resign().catch(() => undefined);
          if (!this.stopped) setTimeout(() => this.runCampaign(), 500).unref();
        }
      }),
    );
    campaign.on('error', (err: Error) =>
      this.serialize(async () => {
        if (this.campaign !== campaign) return;
        this.campaign = null;
        this.leading = false;
        this.replication.stepDown();
        this.logger.warn(`leadership campaign ended: ${err.message}; campaigning again`);
        if (!this.stopped) setTimeout(() => this.runCampaign(), 200).unref();
      }),
    );
  }

  private async onElected(campaign: Campaign): Promise<void> {
    if (this.campaign !== campaign || this.stopped) return;
    const client = this.client!;
    const recorded = Number((await client.get(this.keys.epoch(this.config.shard)).string()) ?? 0) || 0;
    const client2 = client;
    const shard = this.config.shard;
    const self = this.info!.node;
    const campaignKey = await campaign.getCampaignKey();
    const epoch = await this.replication.lead(recorded + 1, (begun) => ({
      // Written only while our campaign key exists: a deposed master must not overwrite its successor's.
      record: async (names) => {
        const value = JSON.stringify({ epoch: begun, members: [self, ...names.filter((n) => n !== self)] });
        const r = await client2
          .if(campaignKey, 'Create', '>', 0)
          .then(client2.put(this.keys.isr(shard)).value(value))
          .commit();
        if (!r.succeeded) throw new Error('no longer the leader: the in-sync set was not recorded');
      },
    }));
    await client.put(this.keys.epoch(this.config.shard)).value(String(epoch));
    this.leading = true;
    this.leader = { ...this.info!, epoch };
    await campaign.proclaim(JSON.stringify(this.leader));
    this.logger.log(`elected master of shard ${this.config.shard}, epoch ${epoch}`);
  }

  /** Null while this node leads with a proven lease; otherwise the sentence a write is refused with. */
  writeRefusal(): string | null {
    if (this.leading && Date.now() < this.provenUntil - FENCE_MARGIN_MS) return null;
    const l = this.leader && this.leader.node !== this.info?.node ? this.leader : null;
    const where = l ? `master is ${l.rpc}, epoch ${l.epoch}` : 'no master is known';
    return `not the master of shard ${this.config.shard} (${where})`;
  }

  status(): ClusterStatus | null {
    if (!this.enabled) return null;
    return {
      cluster: this.config.cluster_name,
      shard: this.config.shard,
      node: this.info?.node ?? this.config.node_name ?? '',
      role: !this.info ? 'starting' : this.leading ? 'master' : 'follower',
      epoch: this.storage.isOpen ? this.storage.latestEpoch : 0,
      master: this.leader,
      leaseProvenForMs: this.leading ? Math.max(0, this.provenUntil - Date.now()) : null,
      inSync: this.leading ? [this.info!.node, ...this.replication.inSyncMembers()] : null,
    };
  }

  async onApplicationShutdown(): Promise<void> {
    this.stopped = true;
    this.replication.stepDown();
    try {
      await this.campaign?.resign();
    } catch {
      // the lease may already be gone
    }
    await this.observer?.cancel().catch(() => undefined);
    await this.nodeLease?.revoke().catch(() => undefined);
    this.client?.close();
  }
}
