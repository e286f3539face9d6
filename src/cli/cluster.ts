/**
 * `ims cluster init|status`: the shard map of a cluster in etcd, and each shard's master, epoch and
 * nodes as etcd and the nodes themselves report them.
 */
import { Etcd3 } from 'etcd3';
import {
  clusterKeys,
  etcdHosts,
  parseInSync,
  parseLeader,
  parseShardMap,
  type NodeInfo,
} from '../cluster/cluster-keys.js';

export interface ShardReport {
  shard: number;
  master: { node: string; rpc: string; epoch: number } | null;
  epoch: number | null;
  nodes: (NodeInfo & { role?: string; lagBytes?: number | null; inSync?: boolean | null })[];
  inSync: string[];
}

export interface ClusterReport {
  cluster: string;
  shards: ShardReport[];
}

/** Writes the shard map; refuses to change an existing one (shards decide where every user lives). */
export async function clusterInit(etcd: string, cluster: string, shards: number): Promise<string> {
  const client = new Etcd3({ hosts: etcdHosts(etcd), dialTimeout: 3000 });
  try {
    const key = clusterKeys(cluster).shardMap;
    const value = JSON.stringify({ shards });
    const r = await client
      .if(key, 'Create', '==', 0)
      .then(client.put(key).value(value))
      .else(client.get(key))
      .commit();
    if (r.succeeded) return `cluster "${cluster}": shard map written, ${shards} shard(s)`;
    const existing = parseShardMap(r.responses[0]?.response_range?.kvs[0]?.value.toString() ?? null);
    if (existing?.shards === shards) return `cluster "${cluster}": shard map already has ${shards} shard(s)`;
    throw new Error(
      `cluster "${cluster}" already has a shard map of ${existing?.shards ?? '?'} shard(s); ` +
        `changing the number of shards would move users between shards`,
    );
  } finally {
    client.close();
  }
}

/** Fetches a node's /summary for its replication figures (null when it has no HTTP or does not answer). */
async function nodeSummary(http: string | null): Promise<Record<string, unknown> | null> {
  if (!http) return null;
  try {
    const res = await fetch(`http://${http}/summary`, { signal: AbortSignal.timeout(2000) });
    return (await res.json()) as Record<string, unknown>;
  } catch {
    return null;
  }
}

export async function clusterStatus(etcd: string, cluster: string): Promise<ClusterReport> {
  const client = new Etcd3({ hosts: etcdHosts(etcd), dialTimeout: 3000 });
  try {
    const keys = clusterKeys(cluster);
    const map = parseShardMap(await client.get(keys.shardMap).string());
    if (!map) throw new Error(`cluster "${cluster}" has no shard map in etcd ${etcd} (run ims cluster init)`);
    const shards: ShardReport[] = [];
    for (let n = 0; n < map.shards; n++) {
      const nodes = Object.values(await client.getAll().prefix(keys.nodes(n)).strings()).map(
        (v) => JSON.parse(v) as NodeInfo,
      );
      const leader = parseLeader(
        await client
          .election(keys.election(n))
          .leader()
          .catch(() => undefined),
      );
      const epochText = await client.get(keys.epoch(n)).string();
      const report: ShardReport = {
        shard: n,
        master: leader ? { node: leader.node, rpc: leader.rpc, epoch: leader.epoch } : null,
        epoch: epochText === null ? null : Number(epochText),
        nodes: [],
        inSync: [],
      };
      for (const node of nodes.sort((a, b) => a.node.localeCompare(b.node))) {
        const s = await nodeSummary(node.http);
        const c = s?.cluster as { role?: string } | undefined;
        const slave = (s?.replication as { slave?: { lagBytes: number | null } })?.slave;
        report.nodes.push({
          ...node,
          role: c?.role,
          lagBytes: slave?.lagBytes ?? (c?.role === 'master' ? 0 : null),
        });
      }
      // The in-sync set as the master recorded it in etcd (what decides who may be elected).
      const isr = parseInSync(await client.get(keys.isr(n)).string());
      report.inSync = isr?.members ?? [];
      shards.push(report);
    }
    return { cluster, shards };
  } finally {
    client.close();
  }
}

export function formatClusterStatus(r: ClusterReport): string {
  const lines = [`cluster "${r.cluster}": ${r.shards.length} shard(s)`];
  for (const s of r.shards) {
    const m = s.master ? `${s.master.node} (${s.master.rpc}), epoch ${s.master.epoch}` : 'none';
    lines.push(
      `shard ${s.shard}: master ${m}; ${s.nodes.length} node(s); in sync: ${s.inSync.join(', ') || '-'}`,
    );
    for (const n of s.nodes) {
      lines.push(
        `  ${n.node}  rpc ${n.rpc}  sync ${n.sync}  ${n.role ?? 'unknown'}` +
          (n.lagBytes === null || n.lagBytes === undefined ? '' : `  lag ${n.lagBytes} B`),
      );
    }
  }
  return lines.join('\n');
}
