/**
 * Cluster mode (etcd_endpoints set): etcd elects each shard's master; message data keeps flowing over
 * ims's own replication. A node checks the shard map and its data folder's identity, registers itself
 * under a lease, and campaigns for its shard (etcd's election recipe). The winner leads with a new epoch,
 * recorded in etcd; the others follow it. Only a member of the recorded in-sync set may lead (the rules
 * are in leadership.ts). The leader proves its leadership by renewing its lease: when it cannot, it
 * stops acknowledging before the lease can expire (so never two masters acknowledge at once; counted in
 * lease-fence.ts), steps down, and follows whoever wins next; its slave link cuts a divergent tail by
 * the epochs.
 */
import * as os from 'node:os';
import { Injectable, Logger, type OnApplicationShutdown } from '@nestjs/common';
import { Etcd3, type Campaign, type Election, type ElectionObserver, type Lease } from 'etcd3';
import { ImsConfig, parseHostPort } from '../config/ims-config.js';
import { SettingError } from '../config/setting-error.js';
import { ReplicationService } from '../replication/replication.service.js';
import { StorageService } from '../storage/storage.service.js';
import { claimDataFolder, readDataFolderIdentity, writeDataFolderIdentity } from './cluster-identity.js';
import { FailureStreak } from './failure-streak.js';
import {
  clusterKeys,
  etcdHosts,
  parseLeader,
  parseShardMap,
  type LeaderInfo,
  type NodeInfo,
} from './cluster-keys.js';
import { Leadership } from './leadership.js';
import { LeaseFence, monotonicNow } from './lease-fence.js';
import { EtcdShardRegistry } from './shard-registry.js';

/** Lease time to live (s): a dead master's leadership ends this long after its last renewal. */
export const LEASE_TTL_S = 3;
/**
 * A leader stops acknowledging this long before its lease could expire, counted on the monotonic clock
 * from when the answered renewal was *sent*: clocks of etcd and this process may run at slightly
 * different rates.
 */
const FENCE_MARGIN_MS = 700;
/** How often a queued node re-reads the in-sync set (it leaves the queue when recorded out of it). */
const ELIGIBILITY_POLL_MS = 300;
/** How long a restarted node waits for its previous process's registration to expire. */
const REGISTRATION_WAIT_MS = (LEASE_TTL_S + 1) * 1000;

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
  /** What the settings give up, when they do (min_insync_replicas=0). */
  warning: string | null;
}

@Injectable()
export class ClusterService implements OnApplicationShutdown {
  private readonly logger = new Logger('Cluster');
  /** Repeated failures (etcd unreachable) are logged once, with back-off between tries. */
  private readonly registration = new FailureStreak(this.logger, 'node registration in etcd');
  private readonly campaigning = new FailureStreak(this.logger, 'leadership campaign');
  private client: Etcd3 | null = null;
  private nodeLease: Lease | null = null;
  private election: Election | null = null;
  private observer: ElectionObserver | null = null;
  /** The campaign this node is queued or leading with, and the fence of its lease. */
  private campaign: { campaign: Campaign; fence: LeaseFence } | null = null;
  private leadership: Leadership | null = null;
  private info: NodeInfo | null = null;
  private leader: LeaderInfo | null = null;
  private leading = false;
  private stopped = false;
  private eligibilityTimer: NodeJS.Timeout | null = null;
  /** The last "may not lead" sentence logged, so that a long wait is said once. */
  private ineligibleSaid: string | null = null;
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

  /**
   * Checks the shard map and the data folder (before storage is used for anything else). From here on,
   * until this node is elected and leads, every write on every listener is refused.
   */
  async check(): Promise<void> {
    const c = this.config;
    this.replication.setAuthority(() => this.writeRefusal());
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
    const joinedAs = readDataFolderIdentity(c.storage_root)?.node;
    if (c.node_name && joinedAs && joinedAs !== c.node_name) {
      throw new SettingError(
        'node_name',
        c.node_name,
        `the data folder ${c.storage_root} joined shard ${c.shard} as "${joinedAs}", and the in-sync set ` +
          `names it so: set node_name=${joinedAs}, or give this name a new data folder`,
      );
    }
  }

  /**
   * The node's one name: node_name, else the name its data folder joined under, else
   * `<hostname>:<rpc port>` (unique per pod and per process on one machine), recorded in the folder.
   */
  private resolveName(rpcPort: number): string {
    const c = this.config;
    const identity = readDataFolderIdentity(c.storage_root) ?? { cluster: c.cluster_name, shard: c.shard };
    const name = c.node_name ?? identity.node ?? `${os.hostname()}:${rpcPort}`;
    if (identity.node !== name) writeDataFolderIdentity(c.storage_root, { ...identity, node: name });
    return name;
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
    const node = this.resolveName(parseHostPort(bound.rpc).port);
    this.info = {
      node,
      rpc,
      sync: advertise(bound.sync, c.advertise_sync)!,
      http: advertise(bound.http, c.advertise_http),
    };
    this.replication.nodeName = node;
    this.leadership = new Leadership(
      new EtcdShardRegistry(client, c.cluster_name, c.shard),
      node,
      c.min_insync_replicas,
    );
    await this.register(true);
    this.election = client.election(this.keys.election(c.shard), LEASE_TTL_S);
    this.observer = await this.election.observe();
    this.observer.on('change', (value) => this.serialize(() => this.onLeader(parseLeader(value))));
    this.observer.on('error', (err) => this.logger.warn(`leader observer: ${(err as Error).message}`));
    this.serialize(() => this.onLeader(parseLeader(this.observer!.leader())));
    this.logger.log(
      `joined cluster "${c.cluster_name}" shard ${c.shard} as ${node} (lease ttl ${LEASE_TTL_S} s, ` +
        `min_insync_replicas ${c.min_insync_replicas})`,
    );
    const warning = this.warning();
    if (warning) this.logger.warn(warning);
    this.runCampaign();
  }

  /**
   * Publishes this node under a lease. A name another live process holds is refused: at start-up once
   * the previous process's registration has had time to expire; later (after a pause) it is retried.
   */
  private async register(atStart: boolean): Promise<void> {
    const client = this.client!;
    const key = this.keys.node(this.config.shard, this.info!.node);
    const lease = client.lease(LEASE_TTL_S, { autoKeepAlive: true });
    this.nodeLease = lease;
    lease.on('lost', (err) => {
      if (this.stopped || this.nodeLease !== lease) return;
      const pause = this.registration.failed(`lease lost (${err.message})`, 'registering again');
      setTimeout(() => {
        this.register(false).catch((e: Error) => this.registration.failed(e.message));
      }, pause).unref();
    });
    const leaseId = await lease.grant();
    const deadline = monotonicNow() + REGISTRATION_WAIT_MS;
    for (;;) {
      const r = await client
        .if(key, 'Create', '==', 0)
        .then(client.put(key).value(JSON.stringify(this.info)).lease(leaseId))
        .else(client.get(key))
        .commit();
      if (r.succeeded) {
        this.registration.succeeded('registered again');
        return;
      }
      const held = r.responses[0]?.response_range?.kvs[0];
      if (held && held.lease === leaseId) return;
      if (!atStart || monotonicNow() > deadline || this.stopped) {
        await lease.revoke().catch(() => undefined);
        throw new SettingError(
          'node_name',
          this.info!.node,
          `another live node of shard ${this.config.shard} is registered under this name ` +
            `(${held?.value.toString() ?? 'unknown'}); every node of a shard needs its own name`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }

  /** One role change at a time, in order. */
  private serialize(step: () => Promise<void>): void {
    this.chain = this.chain
      .then(step)
      .catch((err: Error) => this.logger.error(`role change failed: ${err.message}`));
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

  /** Queues for the election once the recorded in-sync set lets this node lead. */
  private runCampaign(): void {
    if (this.stopped || this.campaign) return;
    this.leadership!.mayCampaign().then(
      (ok) => {
        if (ok) {
          this.ineligibleSaid = null;
          this.startCampaign();
        } else setTimeout(() => this.runCampaign(), ELIGIBILITY_POLL_MS).unref();
      },
      (err: Error) => {
        const pause = this.campaigning.failed(`cannot read the in-sync set (${err.message})`);
        setTimeout(() => this.runCampaign(), pause).unref();
      },
    );
  }

  private sayOnce(sentence: string): void {
    if (this.ineligibleSaid === sentence) return;
    this.ineligibleSaid = sentence;
    this.logger.warn(sentence);
  }

  private startCampaign(): void {
    if (this.stopped || this.campaign) return;
    const fence = new LeaseFence(LEASE_TTL_S * 1000, FENCE_MARGIN_MS);
    // The lease is granted after this moment: if elected, leadership is proven from here + ttl.
    const requestedAt = monotonicNow();
    const campaign = this.election!.campaign(JSON.stringify({ ...this.info!, epoch: 0 }));
    const mine = { campaign, fence };
    this.campaign = mine;
    const lease = (campaign as unknown as { lease: Lease }).lease;
    lease.on('keepaliveFired', () => fence.keepaliveSent());
    lease.on('keepaliveSucceeded', (res: { TTL?: string }) =>
      fence.keepaliveAnswered(res.TTL === undefined ? undefined : Number(res.TTL)),
    );
    lease.on('keepaliveFailed', () => fence.streamReset());
    lease.on('keepaliveEstablished', () => fence.streamReset());
    this.watchEligibility(mine);
    campaign.on('elected', () =>
      this.serialize(async () => {
        if (this.campaign !== mine || this.stopped) return;
        fence.granted(requestedAt);
        try {
          await this.onElected(mine);
        } catch (err) {
          // Elected but unable to lead: give the leadership back so that another node can take it.
          this.logger.error(`could not take over as master: ${(err as Error).message}; resigning`);
          await this.leaveQueue(mine, 500);
        }
      }),
    );
    campaign.on('error', (err: Error) =>
      this.serialize(async () => {
        if (this.campaign !== mine) return;
        const pause = this.campaigning.failed(`campaign ended (${err.message})`, 'campaigning again');
        await this.leaveQueue(mine, pause);
      }),
    );
  }

  /**
   * While queued (not leading), a node the master records out of the in-sync set leaves the queue:
   * it may not win. (The check when elected is what makes this safe; this keeps the queue moving.)
   */
  private watchEligibility(mine: { campaign: Campaign; fence: LeaseFence }): void {
    const tick = () => {
      if (this.campaign !== mine || this.stopped) return;
      if (this.leading) {
        this.eligibilityTimer = setTimeout(tick, ELIGIBILITY_POLL_MS);
        this.eligibilityTimer.unref();
        return;
      }
      this.leadership!.mayCampaign().then(
        (ok) => {
          if (this.campaign !== mine || this.stopped) return;
          if (!ok && !this.leading) {
            this.serialize(async () => {
              if (this.campaign !== mine || this.leading) return;
              this.sayOnce(
                `recorded out of the in-sync set of shard ${this.config.shard}: left the election queue ` +
                  'until a master records this node back',
              );
              await this.leaveQueue(mine, 0);
            });
            return;
          }
          this.eligibilityTimer = setTimeout(tick, ELIGIBILITY_POLL_MS);
          this.eligibilityTimer.unref();
        },
        () => {
          this.eligibilityTimer = setTimeout(tick, ELIGIBILITY_POLL_MS);
          this.eligibilityTimer.unref();
        },
      );
    };
    this.eligibilityTimer = setTimeout(tick, ELIGIBILITY_POLL_MS);
    this.eligibilityTimer.unref();
  }

  /** Stops leading (if it did), resigns the campaign, and queues again after `delayMs`. */
  private async leaveQueue(mine: { campaign: Campaign; fence: LeaseFence }, delayMs: number): Promise<void> {
    if (this.campaign === mine) this.campaign = null;
    mine.fence.revoke();
    if (this.leading) {
      this.leading = false;
      this.replication.stepDown();
    }
    await mine.campaign.resign().catch(() => undefined);
    if (!this.stopped) setTimeout(() => this.runCampaign(), delayMs).unref();
  }

  private async onElected(mine: { campaign: Campaign; fence: LeaseFence }): Promise<void> {
    const campaignKey = await mine.campaign.getCampaignKey();
    const outcome = await this.leadership!.takeOver(campaignKey, this.storage.latestEpoch);
    if (outcome.kind !== 'lead') {
      this.sayOnce(
        outcome.kind === 'ineligible'
          ? `elected, but not in the recorded in-sync set of shard ${this.config.shard} ` +
              `(${outcome.inSync.join(', ') || 'empty'}): it may not hold every acknowledged save; resigning`
          : 'elected, but the leadership was lost before the shard could be taken over; resigning',
      );
      await this.leaveQueue(mine, 0);
      return;
    }
    const self = this.info!.node;
    const record = this.leadership!.recorder(campaignKey);
    const epoch = await this.replication.lead(outcome.epoch, (begun) => ({
      // Written only while our campaign key exists: a deposed master must not overwrite its successor's.
      record: async (names) => {
        const members = [self, ...names.filter((n) => n !== self)];
        if (!(await record({ epoch: begun, members })))
          throw new Error('no longer the leader: the in-sync set was not recorded');
      },
    }));
    this.leading = true;
    this.leader = { ...this.info!, epoch };
    await mine.campaign.proclaim(JSON.stringify(this.leader));
    this.logger.log(`elected master of shard ${this.config.shard}, epoch ${epoch}`);
  }

  /** Null while this node leads with a proven lease; otherwise the sentence a write is refused with. */
  writeRefusal(): string | null {
    if (this.leading && this.campaign?.fence.proven()) return null;
    if (!this.info)
      return `not the master of shard ${this.config.shard} (this node has not joined its shard yet)`;
    const l = this.leader && this.leader.node !== this.info.node ? this.leader : null;
    const where = l ? `master is ${l.rpc}, epoch ${l.epoch}` : 'no master is known';
    return `not the master of shard ${this.config.shard} (${where})`;
  }

  private warning(): string | null {
    return this.config.min_insync_replicas === 0
      ? 'min_insync_replicas=0: saves are acknowledged after the local fsync alone and any node may be ' +
          'elected, so acknowledged saves can be lost on failover'
      : null;
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
      leaseProvenForMs: this.leading ? (this.campaign?.fence.remainingMs() ?? 0) : null,
      inSync: this.leading ? [this.info!.node, ...this.replication.inSyncMembers()] : null,
      warning: this.warning(),
    };
  }

  async onApplicationShutdown(): Promise<void> {
    this.stopped = true;
    if (this.eligibilityTimer) clearTimeout(this.eligibilityTimer);
    this.leading = false;
    this.replication.stepDown();
    try {
      await this.campaign?.campaign.resign();
    } catch {
      // the lease may already be gone
    }
    await this.observer?.cancel().catch(() => undefined);
    await this.nodeLease?.revoke().catch(() => undefined);
    this.client?.close();
  }
}
