/**
 * A client for an ims cluster: reads the shard map and each shard's master from etcd and watches them,
 * routes a user's calls by |uid| mod shards and a group's by |gid| mod shards (as GoBelieve's im server
 * does), and follows a new master. A save is retried only when it provably was not written (a refusal
 * of the not-written kind, see src/format/refusals.ts, or the connection could not be made); any other
 * failure of a save reaches the caller as an ImsRpcError (or ImsTimeoutError) whose `mayBeStored` says
 * whether it may have been stored, never a silent retry that could store a message twice. Reads go to
 * the master and are retried once the master is known again.
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
  ImsTimeoutError,
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

/** Provably not written (refused before any write, or no connection): safe to send again. */
function unwritten(err: unknown): boolean {
  return (err instanceof ImsRpcError || err instanceof ImsTimeoutError) && err.notWritten;
}

/** First and longest pause between two tries of a refused call. */
const RETRY_FIRST_MS = 25;
const RETRY_MAX_MS = 400;

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

  private readonly readAt = new Map<number, number>();

  /**
   * Reads the shard's master from etcd itself, at most twice a second: a watch can miss a change (etcd
   * restarted under it), and a client that only waited for the watch stayed on a deposed master.
   */
  private async readMaster(shard: number): Promise<void> {
    const now = Date.now();
    if (now - (this.readAt.get(shard) ?? 0) < 500) return;
    this.readAt.set(shard, now);
    try {
      const m = parseLeader(await this.etcd.election(clusterKeys(this.cluster).election(shard)).leader());
      const old = this.masters.get(shard);
      if (m && (!old || old.rpc !== m.rpc || old.epoch !== m.epoch)) {
        this.masters.set(shard, m);
        for (const w of [...this.waiting]) w();
      }
    } catch {
      // etcd unreachable: the watch's view stands
    }
  }

  /** The client of the shard's master, waiting (up to failoverTimeoutMs) while it has none. */
  private async master(shard: number): Promise<ImsClient> {
    const deadline = Date.now() + (this.options.failoverTimeoutMs ?? 15000);
    for (;;) {
      if (this.closed) throw new Error('ImsClusterClient is closed');
      const m = this.masters.get(shard);
      if (m && m.epoch > 0) return this.clientFor(m.rpc);
      void this.readMaster(shard);
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(
          `shard ${shard} has no master (waited ${this.options.failoverTimeoutMs ?? 15000} ms)`,
        );
      await this.changeOrTimeout(Math.min(left, 250));
    }
  }

  /** Waits until etcd names a (new) master of any shard, or `ms` passed. */
  private changeOrTimeout(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.waiting.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.waiting.add(done);
    });
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

  /**
   * Runs a call on the shard's master; `retry` says which failures may be sent again. A refused call is
   * sent again to whichever node etcd names then, the same one included: a master that was paused (a
   * GC stall, SIGSTOP) refuses while it cannot prove its lease and takes writes again once it renews
   * it, without any failover. The pause between tries doubles up to RETRY_MAX_MS and is cut short when
   * etcd names a new master.
   */
  private async onMaster<T>(
    shard: number,
    call: (c: ImsClient) => Promise<T>,
    retry: (err: unknown) => boolean,
  ): Promise<T> {
    const deadline = Date.now() + (this.options.failoverTimeoutMs ?? 15000);
    let pause = RETRY_FIRST_MS;
    for (;;) {
      const client = await this.master(shard);
      try {
        return await call(client);
      } catch (err) {
        if (this.closed || !retry(err) || Date.now() > deadline) throw err;
        void this.readMaster(shard);
        await this.changeOrTimeout(Math.min(pause, Math.max(0, deadline - Date.now())));
        pause = Math.min(pause * 2, RETRY_MAX_MS);
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
