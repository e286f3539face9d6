/**
 * Where a cluster keeps its state in etcd (coordination only: messages flow over ims's replication).
 *   <cluster>/shards                      {"shards": N}: the shard map, written by `ims cluster init`
 *   <cluster>/shard/<n>/nodes/<node>      a node's addresses, under its lease (gone when it dies)
 *   <cluster>/shard/<n>/leader/…          the shard's election (etcd's election recipe)
 *   <cluster>/shard/<n>/epoch             the newest master epoch of the shard
 *   <cluster>/shard/<n>/isr               {"epoch": E, "members": [node…]}: the nodes that hold every
 *                                         acknowledged save (the master and its in-sync replicas)
 */
export interface ShardMap {
  shards: number;
}

/** What a node publishes about itself: how clients and other nodes reach it. */
export interface NodeInfo {
  node: string;
  rpc: string;
  sync: string;
  http: string | null;
}

/** The leader's value in the election: the node and the epoch it began. */
export interface LeaderInfo extends NodeInfo {
  epoch: number;
}

export const clusterKeys = (cluster: string) => ({
  shardMap: `${cluster}/shards`,
  shard: (n: number) => `${cluster}/shard/${n}/`,
  nodes: (n: number) => `${cluster}/shard/${n}/nodes/`,
  node: (n: number, name: string) => `${cluster}/shard/${n}/nodes/${name}`,
  election: (n: number) => `${cluster}/shard/${n}/leader`,
  epoch: (n: number) => `${cluster}/shard/${n}/epoch`,
  isr: (n: number) => `${cluster}/shard/${n}/isr`,
});

export interface InSyncRecord {
  epoch: number;
  members: string[];
}

export function parseInSync(text: string | null): InSyncRecord | null {
  if (text === null) return null;
  try {
    const v = JSON.parse(text) as InSyncRecord;
    return Array.isArray(v.members) && typeof v.epoch === 'number' ? v : null;
  } catch {
    return null;
  }
}

/** `host:port,host:port` → etcd3 hosts. */
export function etcdHosts(endpoints: string): string[] {
  return endpoints
    .split(',')
    .map((e) => e.trim())
    .filter((e) => e.length > 0)
    .map((e) => (e.includes('://') ? e : `http://${e}`));
}

export function parseShardMap(text: string | null): ShardMap | null {
  if (text === null) return null;
  try {
    const v = JSON.parse(text) as Partial<ShardMap>;
    return Number.isInteger(v.shards) && (v.shards as number) > 0 ? { shards: v.shards as number } : null;
  } catch {
    return null;
  }
}

export function parseLeader(text: string | undefined | null): LeaderInfo | null {
  if (!text) return null;
  try {
    const v = JSON.parse(text) as LeaderInfo;
    return typeof v.node === 'string' && typeof v.sync === 'string' && typeof v.epoch === 'number' ? v : null;
  } catch {
    return null;
  }
}
