/**
 * The chaos harness: a real etcd, three real ims nodes (one shard, min_insync_replicas=1) and a
 * LinkProxy on every link — client → each node's rpc (the node advertises the proxy), each follower →
 * each master's sync (peer_sync_addresses), each node → etcd (its own etcd_endpoints). Faults: SIGKILL,
 * SIGSTOP/SIGCONT, links cut (reset or blackhole), delayed or throttled, etcd stopped, the wall clock of
 * a node stepped (libfaketime), CPU burners. `runScenario` runs the workload through a fault, heals
 * everything, lets the cluster settle and checks the history.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Logger } from '@nestjs/common';
import { Etcd3 } from 'etcd3';
import { ImsClusterClient } from '../../../src/client/index.js';
import { clusterKeys, parseInSync } from '../../../src/cluster/cluster-keys.js';
import { EtcdProcess } from '../../support/etcd.js';
import { removeDir, tempDir } from '../../support/fixtures.js';
import { MAIN_JS, startServer, type ServerProcess } from '../../support/server-process.js';
import { waitFor } from '../../support/wait.js';
import { blockDifference as blockDifferenceOf } from '../../replication/support.js';
import { LinkProxy } from './link-proxy.js';
import { checkHistory, describeReport, Workload, type HistoryReport } from './history.js';

// The client's transport logs every reset connection with a stack; the checker counts failures instead.
Logger.overrideLogger(false);

export const BLOCK_SIZE = 1048576;
export const NAMES = ['a', 'b', 'c'] as const;
export type NodeName = string;

/** Where Debian's libfaketime is (scripts/ensure-etcd.mjs installs the faketime package). */
export function faketimeLibrary(): string | null {
  const candidates = [
    process.env.IMS_FAKETIME_LIB,
    '/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1',
    '/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1',
    '/usr/lib/faketime/libfaketimeMT.so.1',
  ];
  return candidates.find((c) => c && fs.existsSync(c)) ?? null;
}

export interface ChaosOptions {
  /** Unique per scenario: the cluster's etcd prefix. */
  cluster: string;
  replicaLagTimeoutMs?: number;
  /** Run the nodes under libfaketime, so that `setClock` can step their wall clocks. */
  fakeClock?: boolean;
}

interface NodeState {
  server: ServerProcess | null;
  dataDir: string;
  work: string;
  paused: boolean;
}

export interface Summary {
  role: string;
  epoch: number;
  master: { node: string; epoch: number } | null;
  leaseProvenForMs: number | null;
}

export class ChaosCluster {
  readonly rpc = new Map<NodeName, LinkProxy>();
  /** `from>to`: the link follower `from` uses to reach `to`'s sync listener. */
  readonly sync = new Map<string, LinkProxy>();
  readonly etcdLink = new Map<NodeName, LinkProxy>();
  private readonly nodes = new Map<NodeName, NodeState>();
  private readonly retired: ServerProcess[] = [];
  private readonly burners: ChildProcess[] = [];
  private readonly kv: Etcd3;
  private client: ImsClusterClient | null = null;
  /** What the scenario did and saw, with seconds since the start (for a failure report). */
  readonly events: string[] = [];
  private readonly startedAt = performance.now();
  private lastMaster: NodeName | null = null;

  private constructor(
    readonly etcd: EtcdProcess,
    readonly options: ChaosOptions,
  ) {
    this.kv = new Etcd3({ hosts: `http://${etcd.endpoint}`, dialTimeout: 3000 });
  }

  static async start(etcd: EtcdProcess, options: ChaosOptions): Promise<ChaosCluster> {
    const init = spawnSync(
      process.execPath,
      [MAIN_JS, 'cluster', 'init', '--etcd', etcd.endpoint, '--cluster', options.cluster, '--shards', '1'],
      { encoding: 'utf8' },
    );
    assert.equal(init.status, 0, init.stderr);
    if (options.fakeClock) assert.ok(faketimeLibrary(), 'libfaketime is missing: apt-get install faketime');
    const c = new ChaosCluster(etcd, options);
    for (const n of NAMES) {
      c.rpc.set(n, await LinkProxy.start(`client>${n}`));
      c.etcdLink.set(n, await LinkProxy.start(`${n}>etcd`, etcd.endpoint));
      for (const m of NAMES) if (m !== n) c.sync.set(`${n}>${m}`, await LinkProxy.start(`${n}>${m}`));
      const work = tempDir(`ims-chaos-${n}-`);
      c.nodes.set(n, { server: null, dataDir: path.join(work, 'data'), work, paused: false });
    }
    for (const p of [...c.rpc.values(), ...c.sync.values(), ...c.etcdLink.values()])
      p.log = (text) => c.note(text);
    for (const n of NAMES) await c.startNode(n);
    return c;
  }

  note(text: string): void {
    this.events.push(`${((performance.now() - this.startedAt) / 1000).toFixed(1)} s: ${text}`);
  }

  server(name: NodeName): ServerProcess {
    const s = this.nodes.get(name)!.server;
    assert.ok(s, `node ${name} is not running`);
    return s;
  }

  get names(): NodeName[] {
    return [...NAMES];
  }

  private clockFile(name: NodeName): string {
    return path.join(this.nodes.get(name)!.work, 'faketime.rc');
  }

  /** Starts (or restarts) a node on its data folder, and points its links at its new ports. */
  async startNode(name: NodeName): Promise<void> {
    const st = this.nodes.get(name)!;
    assert.ok(!st.server || st.server.exited, `node ${name} is still running`);
    if (st.server) this.retired.push(st.server);
    const others = NAMES.filter((m) => m !== name);
    let env: Record<string, string> | undefined;
    if (this.options.fakeClock) {
      if (!fs.existsSync(this.clockFile(name))) fs.writeFileSync(this.clockFile(name), '+0\n');
      env = {
        LD_PRELOAD: faketimeLibrary()!,
        FAKETIME_TIMESTAMP_FILE: this.clockFile(name),
        // Only the wall clock steps (as NTP would step it); the monotonic clock runs on.
        FAKETIME_DONT_FAKE_MONOTONIC: '1',
        FAKETIME_NO_CACHE: '1',
      };
    }
    const server = await startServer({
      dataDir: st.dataDir,
      env,
      config: {
        etcd_endpoints: this.etcdLink.get(name)!.address,
        cluster_name: this.options.cluster,
        shard: 0,
        node_name: name,
        min_insync_replicas: 1,
        replica_lag_timeout_ms: this.options.replicaLagTimeoutMs ?? 800,
        block_size: BLOCK_SIZE,
        advertise_rpc: this.rpc.get(name)!.address,
        peer_sync_addresses: others.map((m) => `${m}=${this.sync.get(`${name}>${m}`)!.address}`).join(','),
      },
    });
    st.server = server;
    st.paused = false;
    this.note(`started ${name}`);
    this.rpc.get(name)!.retarget(server.rpcAddress);
    for (const m of others) this.sync.get(`${m}>${name}`)!.retarget(server.syncAddress);
  }

  running(name: NodeName): boolean {
    const s = this.nodes.get(name)!.server;
    return !!s && !s.exited;
  }

  async kill(name: NodeName): Promise<void> {
    const st = this.nodes.get(name)!;
    this.note(`SIGKILL ${name} (recorded in-sync set: ${(await this.inSync().catch(() => [])).join(',')})`);
    if (st.paused) this.resume(name);
    await st.server?.kill9();
  }

  async restart(name: NodeName): Promise<void> {
    if (this.running(name)) await this.kill(name);
    await this.startNode(name);
  }

  pause(name: NodeName): void {
    this.note(`SIGSTOP ${name}`);
    process.kill(this.server(name).proc.pid!, 'SIGSTOP');
    this.nodes.get(name)!.paused = true;
  }

  resume(name: NodeName): void {
    const st = this.nodes.get(name)!;
    if (!st.paused) return;
    if (st.server && !st.server.exited) process.kill(st.server.proc.pid!, 'SIGCONT');
    this.note(`SIGCONT ${name}`);
    st.paused = false;
  }

  /** Steps a node's wall clock (libfaketime offset such as "+1h", "-1h", "+0"). */
  setClock(name: NodeName, offset: string): void {
    assert.ok(this.options.fakeClock, 'the cluster was started without fakeClock');
    fs.writeFileSync(this.clockFile(name), `${offset}\n`);
  }

  /** Both directions of every replication link of a node (to and from each peer). */
  replicationLinks(name: NodeName): LinkProxy[] {
    return [...this.sync.entries()]
      .filter(([k]) => k.startsWith(`${name}>`) || k.endsWith(`>${name}`))
      .map(([, p]) => p);
  }

  /** Two processes that burn a CPU each (a loaded machine). */
  burnCpu(n = 2): void {
    for (let i = 0; i < n; i++)
      this.burners.push(spawn(process.execPath, ['-e', 'for(;;){}'], { stdio: 'ignore' }));
  }

  stopBurning(): void {
    for (const b of this.burners.splice(0)) b.kill('SIGKILL');
  }

  /** A node's /summary cluster part; null when it does not answer (dead, paused, busy). */
  async summary(name: NodeName): Promise<Summary | null> {
    const st = this.nodes.get(name)!;
    if (!st.server || st.server.exited || st.paused) return null;
    try {
      const res = await fetch(`${st.server.httpBase}/summary`, { signal: AbortSignal.timeout(2000) });
      return ((await res.json()) as { cluster?: Summary }).cluster ?? null;
    } catch {
      return null;
    }
  }

  /** The node that leads with a proven lease (the newest epoch if two say so), or null. */
  async master(): Promise<NodeName | null> {
    let best: { name: NodeName; epoch: number } | null = null;
    for (const n of NAMES) {
      const s = await this.summary(n);
      if (s?.role === 'master' && (!best || s.epoch > best.epoch)) best = { name: n, epoch: s.epoch };
    }
    return best?.name ?? null;
  }

  async waitMaster(what = 'a master', timeoutMs = 30000): Promise<NodeName> {
    const m = await waitFor(() => this.master(), { what, timeoutMs, intervalMs: 100 });
    this.noteMaster(m);
    return m;
  }

  private noteMaster(m: NodeName): void {
    if (m !== this.lastMaster) this.note(`master is ${m}`);
    this.lastMaster = m;
  }

  /** A master other than `old`. */
  async waitNewMaster(old: NodeName, timeoutMs = 30000): Promise<NodeName> {
    const m = await waitFor(
      async () => {
        const m = await this.master();
        return m !== old ? m : null;
      },
      { what: `a master other than ${old}`, timeoutMs, intervalMs: 100 },
    );
    this.noteMaster(m);
    return m;
  }

  /**
   * The election queue, first (the leader) to last: etcd's election recipe elects the campaign key with
   * the lowest create revision, so the second one is the node that wins when the leader goes.
   */
  async electionQueue(): Promise<NodeName[]> {
    const prefix = `election/${clusterKeys(this.options.cluster).election(0)}/`;
    const res = await this.kv.getAll().prefix(prefix).sort('Create', 'Ascend').exec();
    return res.kvs.map((kv) => (JSON.parse(kv.value.toString()) as { node: string }).node);
  }

  /** The in-sync set recorded in etcd. */
  async inSync(): Promise<string[]> {
    const text = await this.kv.get(clusterKeys(this.options.cluster).isr(0)).string();
    return parseInSync(text)?.members ?? [];
  }

  async waitInSync(cond: (members: string[]) => boolean, what: string, timeoutMs = 20000): Promise<string[]> {
    let last: string[] = [];
    return waitFor(async () => ((m) => (cond(m) ? m : null))((last = await this.inSync())), {
      what: () => `${what} (recorded: ${last.join(',') || 'none'})`,
      timeoutMs,
      intervalMs: 50,
    });
  }

  async clusterClient(): Promise<ImsClusterClient> {
    if (!this.client) {
      this.client = new ImsClusterClient({
        etcd: [this.etcd.endpoint],
        cluster: this.options.cluster,
        timeoutMs: 5000,
        failoverTimeoutMs: 20000,
      });
      await this.client.connect();
    }
    return this.client;
  }

  /** Every link open again, every paused node resumed, every dead node restarted, etcd running. */
  async healAll(): Promise<void> {
    this.note('healing everything');
    for (const p of [...this.rpc.values(), ...this.sync.values(), ...this.etcdLink.values()]) p.heal();
    for (const n of NAMES) this.resume(n);
    if (this.etcd.exited) await this.etcd.resume();
    for (const n of NAMES) if (!this.running(n)) await this.startNode(n);
    this.stopBurning();
  }

  /** The end of a scenario: writers stopped, the replicas caught up, devices caught up, nodes stopped. */
  async finish(w: Workload): Promise<HistoryReport> {
    await w.stop();
    const master = await this.waitMaster('a master at the end');
    // The replicas' files may lag a moment behind; a replica that never catches up is reported by the check.
    await waitFor(() => NAMES.every((n) => n === master || this.filesMatch(master, n)), {
      what: 'identical block files',
      timeoutMs: 30000,
      intervalMs: 200,
    }).catch(() => undefined);
    await w.catchUp();
    const inSync = await this.inSync();
    const finalMaster = (await this.master()) ?? master;
    for (const n of NAMES) {
      const s = this.nodes.get(n)!.server;
      if (s && !s.exited) await s.stop('SIGTERM', 20000).catch(() => s.kill9());
    }
    return checkHistory(w, {
      master: finalMaster,
      inSync,
      all: NAMES.map((n) => ({ name: n, dataDir: this.nodes.get(n)!.dataDir })),
      blockSize: BLOCK_SIZE,
    });
  }

  private filesMatch(a: NodeName, b: NodeName): boolean {
    return blockDifferenceOf(this.nodes.get(a)!.dataDir, this.nodes.get(b)!.dataDir) === null;
  }

  /** The last log lines of every node (for a failure message). */
  logs(lines = 40): string {
    const all = [...this.retired, ...NAMES.map((n) => this.nodes.get(n)!.server)];
    const nodeLogs = all
      .filter((x): x is ServerProcess => !!x)
      .map((x) => `--- ${x.configPath}\n${x.output.slice(-lines).join('\n')}`)
      .join('\n');
    return `--- events\n${this.events.join('\n')}\n${nodeLogs}`;
  }

  async close(): Promise<void> {
    this.stopBurning();
    await this.client?.close().catch(() => undefined);
    for (const n of NAMES) {
      this.resume(n);
      await this.nodes
        .get(n)!
        .server?.kill9()
        .catch(() => undefined);
    }
    for (const p of [...this.rpc.values(), ...this.sync.values(), ...this.etcdLink.values()]) await p.close();
    this.kv.close();
    for (const s of this.retired) removeDir(path.dirname(s.configPath));
    for (const n of NAMES) {
      const st = this.nodes.get(n)!;
      if (st.server) removeDir(path.dirname(st.server.configPath));
      removeDir(st.work);
    }
  }
}

export interface ScenarioContext {
  cluster: ChaosCluster;
  workload: Workload;
  /** The cycle number (0…cycles-1). */
  cycle: number;
}

export interface ScenarioOptions extends Omit<ChaosOptions, 'cluster'> {
  /** Fault cycles (each: fault, heal, settle); IMS_CHAOS_CYCLES in the soak. */
  cycles?: number;
  /** Two CPU-burning processes during the whole run. */
  busy?: boolean;
  seed?: number;
}

/** Cycles of a scenario in this run: 1 in npm test, IMS_CHAOS_CYCLES in the soak. */
export const CYCLES = Number(process.env.IMS_CHAOS_CYCLES ?? 1);
export const BUSY = process.env.IMS_CHAOS_BUSY === '1';
/** A case's time limit: start-up and the final check, plus each cycle's fault and healing. */
export const CASE_TIMEOUT_MS = 120_000 + CYCLES * 120_000;

let clusters = 0;

/**
 * Runs one scenario: a fresh cluster under the workload, `fault` once per cycle (each cycle ends with
 * everything healed and saves acknowledged again), then the history check. Returns the report; the
 * caller asserts on it (and on whatever the fault itself must show).
 */
export async function runScenario(
  etcd: EtcdProcess,
  name: string,
  options: ScenarioOptions,
  fault: (ctx: ScenarioContext) => Promise<void>,
): Promise<{ report: HistoryReport; logs: string }> {
  const seed = options.seed ?? Number(process.env.IMS_CHAOS_SEED ?? Math.floor(Math.random() * 1e9));
  const cluster = await ChaosCluster.start(etcd, {
    ...options,
    cluster: `chaos${process.pid}x${++clusters}`,
  });
  let workload: Workload | null = null;
  try {
    await cluster.waitMaster('a first master');
    workload = new Workload(await cluster.clusterClient(), { seed });
    if (options.busy ?? BUSY) cluster.burnCpu(2);
    workload.start();
    const cycles = options.cycles ?? CYCLES;
    for (let cycle = 0; cycle < cycles; cycle++) {
      await waitAcks(workload, 200, 'saves acknowledged before the fault');
      await fault({ cluster, workload, cycle });
      await cluster.healAll();
      if (options.busy ?? BUSY) cluster.burnCpu(2);
      await waitAcks(workload, 100, 'saves acknowledged again after healing');
    }
    cluster.stopBurning();
    const report = await cluster.finish(workload);
    const line = `${describeReport(name, report)} [seed ${seed}, ${cycles} cycle(s)]`;
    console.log(line);
    recordResult(name, cycles, report, options.busy ?? BUSY);
    console.log([...report.examples, ...cluster.events.map((e) => `  ${e}`)].join('\n'));
    return { report, logs: cluster.logs() };
  } catch (err) {
    (err as Error).message += `\n[seed ${seed}]\n${cluster.logs()}`;
    throw err;
  } finally {
    // A failed scenario leaves its writers and readers running: stop them, or the test never ends.
    workload?.abort();
    await cluster.close();
    await workload?.stop();
  }
}

/** Waits until `n` more saves are acknowledged (writes resumed on their own). */
export async function waitAcks(w: Workload, n: number, what: string, timeoutMs = 60000): Promise<void> {
  const from = performance.now();
  await waitFor(() => w.ackedSince(from) >= n, {
    what: () =>
      `${what} (${w.ackedSince(from)} of ${n}; failures ${JSON.stringify(Object.fromEntries(w.failures))})`,
    timeoutMs,
    intervalMs: 50,
  });
}

/** The history rules: nothing lost, no id with two bodies, no skipped id, identical files. */
export function assertClean(report: HistoryReport, logs = ''): void {
  const broken = [
    report.lost > 0 && `${report.lost} acknowledged saves lost`,
    report.twoBodies > 0 && `${report.twoBodies} ids with two bodies`,
    report.skipped > 0 && `${report.skipped} acknowledged ids skipped by a device`,
    !report.identical && 'block files not identical',
  ].filter(Boolean);
  assert.ok(report.acknowledged > 0, 'nothing was acknowledged');
  assert.deepEqual(
    broken,
    [],
    `${broken.join('; ')}\n${report.examples.join('\n')}${logs ? `\n${logs}` : ''}`,
  );
}

/** The soak's table: one JSON line per scenario run, appended to IMS_CHAOS_RESULTS when set. */
function recordResult(name: string, cycles: number, r: HistoryReport, busy: boolean): void {
  const file = process.env.IMS_CHAOS_RESULTS;
  if (!file) return;
  fs.appendFileSync(
    file,
    JSON.stringify({
      fault: name,
      cycles,
      busy,
      acknowledged: r.acknowledged,
      lost: r.lost,
      twoBodies: r.twoBodies,
      skipped: r.skipped,
      identical: r.identical,
      longestGapMs: r.longestGapMs,
    }) + '\n',
  );
}
