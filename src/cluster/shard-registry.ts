/**
 * What the leadership rules read and write in etcd for one shard, behind an interface so that the rules
 * can be tested against an in-memory registry with every interleaving pinned (test/cluster/leadership).
 * Every write of a leader is a transaction guarded by its campaign key: once its lease is gone (it was
 * deposed), nothing it writes lands.
 */
import type { Etcd3 } from 'etcd3';
import { clusterKeys, parseInSync, type InSyncRecord } from './cluster-keys.js';

export interface InSyncReading {
  record: InSyncRecord | null;
  /** etcd's mod revision of the record ('0': none); a claim succeeds only if it is unchanged. */
  revision: string;
}

export interface ShardRegistry {
  readInSync(): Promise<InSyncReading>;
  readEpoch(): Promise<number>;
  /**
   * Takes the shard over in one transaction: only while `campaignKey` exists and the in-sync record is
   * the one read at `seen`, writes the new epoch and the in-sync set {epoch, [self]}. False otherwise.
   */
  claim(campaignKey: string, seen: string, epoch: number, self: string): Promise<boolean>;
  /** Records the in-sync set while `campaignKey` exists; false when it does not (deposed). */
  recordInSync(campaignKey: string, record: InSyncRecord): Promise<boolean>;
}

export class EtcdShardRegistry implements ShardRegistry {
  private readonly keys: ReturnType<typeof clusterKeys>;

  constructor(
    private readonly client: Etcd3,
    cluster: string,
    private readonly shard: number,
  ) {
    this.keys = clusterKeys(cluster);
  }

  async readInSync(): Promise<InSyncReading> {
    const r = await this.client.get(this.keys.isr(this.shard)).exec();
    const kv = r.kvs[0];
    if (!kv) return { record: null, revision: '0' };
    return { record: parseInSync(kv.value.toString()), revision: kv.mod_revision };
  }

  async readEpoch(): Promise<number> {
    return Number((await this.client.get(this.keys.epoch(this.shard)).string()) ?? 0) || 0;
  }

  async claim(campaignKey: string, seen: string, epoch: number, self: string): Promise<boolean> {
    const c = this.client;
    const isr = this.keys.isr(this.shard);
    const r = await c
      .if(campaignKey, 'Create', '>', 0)
      .and(isr, 'Mod', '==', seen)
      .then(
        c.put(this.keys.epoch(this.shard)).value(String(epoch)),
        c.put(isr).value(JSON.stringify({ epoch, members: [self] } satisfies InSyncRecord)),
      )
      .commit();
    return r.succeeded;
  }

  async recordInSync(campaignKey: string, record: InSyncRecord): Promise<boolean> {
    const c = this.client;
    const r = await c
      .if(campaignKey, 'Create', '>', 0)
      .then(c.put(this.keys.isr(this.shard)).value(JSON.stringify(record)))
      .commit();
    return r.succeeded;
  }
}
