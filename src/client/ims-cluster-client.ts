/**
 * A client for an ims cluster: reads the shard map and each shard's master from etcd and watches them,
 * routes a user's calls by |uid| mod shards and a group's by |gid| mod shards (as GoBelieve's im server
 * does), and follows a new master. A save is retried only when it provably was not written (refused
 * with "not the master of shard …" before any write, or the connection could not be made); any other
 * failure of a save reaches the caller, never a silent retry that could store a message twice. Reads
 * go to the master and are retried once the master is known again.
 */
import { Etcd3, type ElectionObserver } from 'etcd3';
import {
  clusterKeys,
  etcdHosts,
  parseLeader,
  parseShardMap,
  type LeaderInfo,
} from '../cluster/cluster-keys.js';
import {
  ImsClient,
  ImsRpcError,
  type HistoryMessage,
  type ImsClientOptions,
  type Int64Input,
  type SaveReply,
  type SyncReply,
} from './ims-client.js';

export interface ImsClusterClientOptions extends Omit<ImsClientOptions, 'host' | 'port'> {
  /** etcd endpoints, host:port each. */
  etcd: string[];
  /** The cluster's name (its etcd key prefix), default "ims". */
  cluster?: string;
  /** How long a call waits for a shard to have a reachable master, in ms (default 15000). */
  failoverTimeoutMs?: number;
}

/** Provably not written: safe to send again to whichever node is master now. */
function unwritten(err: unknown): boolean {
  const text = (err as Error)?.message ?? '';
  if (/^\w+: not the master of shard /.test(text)) return true;
  return /ECONNREFUSED|EHOSTUNREACH|ENOTFOUND/.test(text) && err instanceof ImsRpcError;
}

export class ImsClusterClient {
  private readonly etcd: Etcd3;
  private readonly cluster: string;
  private shards = 0;
  private readonly masters = new Map<number, LeaderInfo | null>();
  private readonly clients = new Map<string, ImsClient>();
  private readonly observers: ElectionObserver[] = [];
  private readonly waiting = new Set<() => void>();
  private closed = false;

  constructor(private readonly options: ImsClusterClientOptions) {
    this.etcd = new Etcd3({ hosts: etcdHosts(options.etcd.join(',')), dialTimeout: 3000 });
    this.cluster = options.cluster ?? 'ims';
  }

  /** Reads the shard map and starts watching each shard's master. */
  async connect(): Promise<void> {
    const keys = clusterKeys(this.cluster);
    const map = parseShardMap(await this.etcd.get(keys.shardMap).string());
    if (!map) throw new Error(`cluster "${this.cluster}" has no shard map in etcd`);
    this.shards = map.shards;
    for (let n = 0; n < map.shards; n++) {
      const observer = await this.etcd.election(keys.election(n)).observe();
      const set = (v: string | undefined) => {
        this.masters.set(n, parseLeader(v));
        for (const w of [...this.waiting]) w();
      };
      observer.on('change', set);
      observer.on('error', () => undefined);
      set(observer.leader());
      this.observers.push(observer);
    }
  }

  get shardCount(): number {
    return this.shards;
  }

  /** The shard of a user or super group: |id| mod shards. */
  shardOf(id: Int64Input): number {
    const v = BigInt(id);
    return Number((v < 0n ? -v : v) % BigInt(this.shards));
  }

  /** The client of the shard's master, waiting (up to failoverTimeoutMs) while it has none. */
  private async master(shard: number, notThis?: string): Promise<ImsClient> {
    const deadline = Date.now() + (this.options.failoverTimeoutMs ?? 15000);
    for (;;) {
      if (this.closed) throw new Error('ImsClusterClient is closed');
      const m = this.masters.get(shard);
      if (m && m.epoch > 0 && m.rpc !== notThis) return this.clientFor(m.rpc);
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(
          `shard ${shard} has no master (waited ${this.options.failoverTimeoutMs ?? 15000} ms)`,
        );
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.waiting.delete(done);
          resolve();
        };
        const timer = setTimeout(done, Math.min(left, 250));
        this.waiting.add(done);
      });
    }
  }

  private clientFor(rpc: string): ImsClient {
    let c = this.clients.get(rpc);
    if (!c) {
      const i = rpc.lastIndexOf(':');
      const { etcd: _e, cluster: _c, failoverTimeoutMs: _f, ...rest } = this.options;
      c = new ImsClient({ ...rest, host: rpc.slice(0, i), port: Number(rpc.slice(i + 1)) });
      this.clients.set(rpc, c);
    }
    return c;
  }

  /** Runs a call on the shard's master; `retry` says which failures may be sent again. */
  private async onMaster<T>(
    shard: number,
    call: (c: ImsClient) => Promise<T>,
    retry: (err: unknown) => boolean,
  ): Promise<T> {
    const deadline = Date.now() + (this.options.failoverTimeoutMs ?? 15000);
    let avoid: string | undefined;
    for (;;) {
      const client = await this.master(shard, avoid);
      try {
        return await call(client);
      } catch (err) {
        if (!retry(err) || Date.now() > deadline) throw err;
        // That node is not (or no longer) the master: wait for etcd to name another one.
        avoid = this.masters.get(shard)?.rpc;
        await new Promise((r) => setTimeout(r, 50));
        if (this.masters.get(shard)?.rpc !== avoid) avoid = undefined;
      }
    }
  }

  savePeerMessage(r: {
    appId: Int64Input;
    uid: Int64Input;
    deviceId: Int64Input;
    cmd: number;
    raw: Buffer;
  }): Promise<SaveReply> {
    return this.onMaster(this.shardOf(r.uid), (c) => c.savePeerMessage(r), unwritten);
  }

  saveGroupMessage(r: {
    appId: Int64Input;
    groupId: Int64Input;
    deviceId: Int64Input;
    cmd: number;
    raw: Buffer;
  }): Promise<SaveReply> {
    return this.onMaster(this.shardOf(r.groupId), (c) => c.saveGroupMessage(r), unwritten);
  }

  syncMessage(r: {
    appId: Int64Input;
    uid: Int64Input;
    deviceId: Int64Input;
    lastMsgId: Int64Input;
  }): Promise<SyncReply> {
    return this.onMaster(
      this.shardOf(r.uid),
      (c) => c.syncMessage(r),
      () => true,
    );
  }

  syncGroupMessage(r: {
    appId: Int64Input;
    uid: Int64Input;
    deviceId: Int64Input;
    groupId: Int64Input;
    lastMsgId: Int64Input;
    timestamp: number;
  }): Promise<SyncReply> {
    return this.onMaster(
      this.shardOf(r.groupId),
      (c) => c.syncGroupMessage(r),
      () => true,
    );
  }

  getNewCount(r: {
    appId: Int64Input;
    uid: Int64Input;
    deviceId: Int64Input;
    lastMsgId: Int64Input;
  }): Promise<{ count: number }> {
    return this.onMaster(
      this.shardOf(r.uid),
      (c) => c.getNewCount(r),
      () => true,
    );
  }

  getLatestMessage(r: {
    appId: Int64Input;
    uid: Int64Input;
    limit: number;
  }): Promise<{ messages: HistoryMessage[] }> {
    return this.onMaster(
      this.shardOf(r.uid),
      (c) => c.getLatestMessage(r),
      () => true,
    );
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const w of [...this.waiting]) w();
    for (const o of this.observers) await o.cancel().catch(() => undefined);
    for (const c of this.clients.values()) await c.close();
    this.etcd.close();
  }
}
