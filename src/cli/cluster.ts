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

export interface ResetIsrOptions {
  etcd: string;
  cluster: string;
  shard: number;
  /** The live node to record as the only in-sync member (default: the live node with the longest log). */
  to?: string;
  /** The operator accepts that saves only the dead members held are lost. */
  acceptDataLoss: boolean;
}

/** Refused, or done: `text` says which, what the shard held and what may be lost. */
export interface ResetIsrResult {
  done: boolean;
  text: string;
}

/**
 * `ims cluster reset-isr`: the way out for a shard whose recorded in-sync set holds only dead nodes
 * (no live node may lead, by the rule that keeps acknowledged saves). It records one live node as the
 * whole set, so that it takes the shard over. Every save that only the dead members held is then lost
 * for good (and its msgId may be given to another message), so it refuses unless the operator says
 * so with --accept-data-loss, and it refuses outright while the shard has a master or any recorded
 * member is alive (that member takes over by itself). The record is written in a transaction on the
 * revision that was read: a master that appears meanwhile is not overruled.
 */
export async function clusterResetIsr(o: ResetIsrOptions): Promise<ResetIsrResult> {
  const client = new Etcd3({ hosts: etcdHosts(o.etcd), dialTimeout: 3000 });
  try {
    const keys = clusterKeys(o.cluster);
    const map = parseShardMap(await client.get(keys.shardMap).string());
    if (!map) throw new Error(`cluster "${o.cluster}" has no shard map in etcd ${o.etcd}`);
    if (o.shard >= map.shards)
      throw new Error(`cluster "${o.cluster}" has ${map.shards} shard(s), numbered 0 to ${map.shards - 1}`);
    const leader = parseLeader(
      await client
        .election(keys.election(o.shard))
        .leader()
        .catch(() => undefined),
    );
    if (leader && leader.epoch > 0) {
      return {
        done: false,
        text: `shard ${o.shard} has a master (${leader.node}, epoch ${leader.epoch}): nothing to reset`,
      };
    }
    const isrKey = keys.isr(o.shard);
    const read = await client.get(isrKey).exec();
    const kv = read.kvs[0];
    const record = parseInSync(kv ? kv.value.toString() : null);
    if (!record) {
      return {
        done: false,
        text: `shard ${o.shard} has no recorded in-sync set: any node may lead it already`,
      };
    }
    const live = Object.values(await client.getAll().prefix(keys.nodes(o.shard)).strings()).map(
      (v) => JSON.parse(v) as NodeInfo,
    );
    const liveNames = live.map((n) => n.node).sort();
    const aliveMembers = record.members.filter((m) => liveNames.includes(m));
    const recorded = `the recorded in-sync set (epoch ${record.epoch}) is ${record.members.join(', ')}`;
    if (aliveMembers.length > 0) {
      return {
        done: false,
        text:
          `shard ${o.shard}: ${recorded}, and ${aliveMembers.join(', ')} ${aliveMembers.length === 1 ? 'is' : 'are'} ` +
          `alive: ${aliveMembers.length === 1 ? 'it' : 'one of them'} takes the shard over by itself (nothing is lost); ` +
          `check its log if it does not`,
      };
    }
    if (live.length === 0) {
      return {
        done: false,
        text:
          `shard ${o.shard}: ${recorded}, and no node of the shard is alive: start a node ` +
          `(best one of ${record.members.join(', ')}, on its own data folder) first`,
      };
    }
    const ends = new Map<string, number | null>();
    for (const n of live) {
      const s = await nodeSummary(n.http);
      const end = (s?.storage as { next_message_id?: number } | undefined)?.next_message_id;
      ends.set(n.node, typeof end === 'number' ? end : null);
    }
    const candidates = [...live].sort((a, b) => (ends.get(b.node) ?? -1) - (ends.get(a.node) ?? -1));
    const chosen = o.to ?? candidates[0].node;
    if (!liveNames.includes(chosen)) {
      throw new Error(
        `node ${chosen} is not a live node of shard ${o.shard} (live: ${liveNames.join(', ')})`,
      );
    }
    const end = ends.get(chosen);
    const where = end === null || end === undefined ? 'an unknown end (no /summary)' : `${end}`;
    const loss =
      `${chosen}'s log ends at ${where}. Every save that the master of epoch ${record.epoch} acknowledged ` +
      `past that is lost for good (and its msgId can be given to another message): only ` +
      `${record.members.join(', ')} ${record.members.length === 1 ? 'is' : 'are'} sure to hold it. ` +
      `${chosen}'s own records past the last acknowledged one become acknowledged. Bring ` +
      `${record.members.join(' or ')} back with ${record.members.length === 1 ? 'its' : 'their'} data folder ` +
      `instead if you can: then nothing is lost`;
    const head = `shard ${o.shard}: ${recorded}, none of them alive (live: ${liveNames.map((n) => `${n} at ${ends.get(n) ?? '?'}`).join(', ')}).`;
    if (!o.acceptDataLoss) {
      return {
        done: false,
        text: `${head}\nRefusing to record ${chosen} alone without --accept-data-loss. ${loss}.`,
      };
    }
    const value = JSON.stringify({ epoch: record.epoch, members: [chosen] });
    const r = await client
      .if(isrKey, 'Mod', '==', kv!.mod_revision)
      .then(client.put(isrKey).value(value))
      .commit();
    if (!r.succeeded) {
      throw new Error(
        `the in-sync set of shard ${o.shard} changed while it was read: nothing written; look again`,
      );
    }
    return {
      done: true,
      text: `${head}\nRecorded ${chosen} as the only in-sync member: it takes the shard over. ${loss}.`,
    };
  } finally {
    client.close();
  }
}
