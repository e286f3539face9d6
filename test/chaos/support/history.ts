/**
 * The one history checker of the chaos suite. A workload keeps 64 saves in flight through
 * ImsClusterClient (1,000 users) and records every acknowledged save (msgId → body text) and every
 * failure by kind; reader "devices" sync their users again and again (SyncMessage from the last key
 * they reached) and remember what they received. After the scenario heals and the cluster settles,
 * `checkHistory` compares that history with the nodes' block files:
 *   - every acknowledged save is on the final master and on every in-sync replica, at its msgId, with
 *     its body (else: lost);
 *   - no msgId holds two different bodies (on two nodes, or as acknowledged and as read by a device);
 *   - a device that reached key K later received every acknowledged message above K (else: skipped);
 *   - the nodes' block files are byte-identical.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { ImsRpcError, ImsTimeoutError, type ImsClusterClient } from '../../../src/client/index.js';
import { Cmd } from '../../../src/format/constants.js';
import { decodeRecord } from '../../../src/format/record.js';
import { imBody } from '../../support/rpc-client.js';
import { blockDifference, blockNames } from '../../replication/support.js';

export const APP = 1;
export const USERS = 1000;
const FIRST_UID = 300_000;
const SENDER = 7;

/** Deterministic choices from a seed (mulberry32), so a failing run can be described by its seed. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A failure's kind, from what the client saw. */
export function failureKind(err: unknown): string {
  if (err instanceof ImsTimeoutError) return 'timeout';
  const kind = messageKind(err);
  // What the client says the caller may do with it (not written: safe to retry; may be stored).
  if (err instanceof ImsRpcError && err.notWritten) return `${kind} (not written)`;
  if (err instanceof ImsRpcError && err.mayBeStored) return `${kind} (may be stored)`;
  return kind;
}

function messageKind(err: unknown): string {
  const m = (err as Error)?.message ?? String(err);
  if (/not the master of shard/.test(m)) return 'not the master';
  if (/not enough in-sync replicas/.test(m)) return 'not enough in-sync replicas';
  if (/leadership lost/.test(m)) return 'leadership lost';
  if (/has no master/.test(m)) return 'no master';
  if (/ECONNREFUSED|ECONNRESET|EPIPE|socket|closed|connect/i.test(m)) return 'connection';
  if (/timed? ?out/i.test(m)) return 'timeout';
  return `other: ${m.slice(0, 80)}`;
}

interface Ack {
  uid: number;
  text: string;
}

interface Device {
  users: number[];
  key: Map<number, number>;
  received: Map<number, Map<number, Buffer>>; // uid → msgId → raw
}

export interface WorkloadOptions {
  seed: number;
  inFlight?: number;
  devices?: number;
}

export class Workload {
  readonly acked = new Map<number, Ack>();
  /** msgIds acknowledged twice, for two different saves. */
  readonly ackedTwice: string[] = [];
  readonly failures = new Map<string, number>();
  readonly readFailures = new Map<string, number>();
  /** performance.now() of every successful device read (to show reads went on during a fault). */
  readonly readTimes: number[] = [];
  private readonly ackTimes: number[] = [];
  private readonly devices: Device[] = [];
  private running = false;
  private loops: Promise<void>[] = [];
  private readonly random: () => number;
  private seq = 0;

  constructor(
    private readonly client: ImsClusterClient,
    private readonly options: WorkloadOptions,
  ) {
    this.random = rng(options.seed);
    const n = options.devices ?? 8;
    for (let d = 0; d < n; d++) {
      const users: number[] = [];
      for (let u = d; u < USERS; u += n) users.push(FIRST_UID + u);
      this.devices.push({ users, key: new Map(), received: new Map() });
    }
  }

  get lastAckAt(): number {
    return this.ackTimes.at(-1) ?? 0;
  }

  /** Acknowledged saves after a moment (performance.now()). */
  ackedSince(t: number): number {
    let n = 0;
    for (let i = this.ackTimes.length - 1; i >= 0 && this.ackTimes[i] > t; i--) n++;
    return n;
  }

  readsBetween(from: number, to: number): number {
    return this.readTimes.filter((t) => t >= from && t <= to).length;
  }

  /** The longest stretch without an acknowledgement between the first and the last one (ms). */
  longestGapMs(): number {
    let gap = 0;
    for (let i = 1; i < this.ackTimes.length; i++)
      gap = Math.max(gap, this.ackTimes[i] - this.ackTimes[i - 1]);
    return Math.round(gap);
  }

  /** The longest stretch without an acknowledgement inside [from, to] (performance.now() times). */
  longestGapBetween(from: number, to: number): number {
    let prev = from;
    let gap = 0;
    for (const t of this.ackTimes) {
      if (t < from) continue;
      if (t > to) break;
      gap = Math.max(gap, t - prev);
      prev = t;
    }
    return Math.round(Math.max(gap, to - prev));
  }

  /** Acknowledgements received inside [from, to]. */
  ackedBetween(from: number, to: number): number {
    return this.ackTimes.filter((t) => t >= from && t <= to).length;
  }

  start(): void {
    this.running = true;
    const inFlight = this.options.inFlight ?? 64;
    for (let w = 0; w < inFlight; w++) this.loops.push(this.writer(w));
    for (const d of this.devices) this.loops.push(this.reader(d));
  }

  /** Tells the writers and readers to stop after their current call. */
  abort(): void {
    this.running = false;
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
    this.loops = [];
  }

  private async writer(w: number): Promise<void> {
    while (this.running) {
      const uid = FIRST_UID + Math.floor(this.random() * USERS);
      const text = `s${this.options.seed}w${w}n${this.seq++}`;
      try {
        const r = await this.client.savePeerMessage({
          appId: APP,
          uid,
          deviceId: 1,
          cmd: Cmd.IM,
          raw: imBody(SENDER, uid, text),
        });
        this.ackTimes.push(performance.now());
        const before = this.acked.get(r.msgId);
        if (before && before.text !== text)
          this.ackedTwice.push(`${r.msgId}: "${before.text}" and "${text}"`);
        this.acked.set(r.msgId, { uid, text });
      } catch (err) {
        // Not acknowledged (refused or ambiguous): nothing is claimed about it.
        const kind = failureKind(err);
        this.failures.set(kind, (this.failures.get(kind) ?? 0) + 1);
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }

  private async syncUser(d: Device, uid: number, deviceIndex: number): Promise<boolean> {
    const r = await this.client.syncMessage({
      appId: APP,
      uid,
      deviceId: 100 + deviceIndex,
      lastMsgId: d.key.get(uid) ?? 0,
    });
    let got = d.received.get(uid);
    if (!got) d.received.set(uid, (got = new Map()));
    let key = d.key.get(uid) ?? 0;
    for (const m of r.messages) {
      if (!got.has(m.msgId)) got.set(m.msgId, Buffer.from(m.raw));
      key = Math.max(key, m.msgId);
    }
    d.key.set(uid, key);
    return r.hasMore;
  }

  private async reader(d: Device): Promise<void> {
    const index = this.devices.indexOf(d);
    while (this.running) {
      for (const uid of d.users) {
        if (!this.running) return;
        try {
          await this.syncUser(d, uid, index);
          this.readTimes.push(performance.now());
        } catch (err) {
          const kind = failureKind(err);
          this.readFailures.set(kind, (this.readFailures.get(kind) ?? 0) + 1);
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    }
  }

  /** After the writers stopped: every device syncs each of its users from its key to the end. */
  async catchUp(): Promise<void> {
    await Promise.all(
      this.devices.map(async (d, i) => {
        for (const uid of d.users) {
          for (let round = 0; round < 100 && (await this.syncUser(d, uid, i)); round++);
        }
      }),
    );
  }

  /** Device-side findings: acknowledged ids a device never received, and ids it read with another body. */
  deviceFindings(): { skipped: string[]; readOtherBody: string[] } {
    const skipped: string[] = [];
    const readOtherBody: string[] = [];
    const byUser = new Map<number, Device>();
    for (const d of this.devices) for (const u of d.users) byUser.set(u, d);
    for (const [id, a] of this.acked) {
      const raw = byUser.get(a.uid)!.received.get(a.uid)?.get(id);
      if (!raw) skipped.push(`${id} (uid ${a.uid}, "${a.text}")`);
      else if (!raw.includes(Buffer.from(a.text)))
        readOtherBody.push(
          `${id}: acknowledged "${a.text}", a device read ${JSON.stringify(raw.toString('latin1').slice(-24))}`,
        );
    }
    return { skipped, readOtherBody };
  }
}

/** Every record of a data folder: msgId → body. */
export function scanRecords(dir: string, blockSize: number): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  for (const name of blockNames(dir)) {
    const buf = fs.readFileSync(path.join(dir, name));
    const base = Number(name.slice('message_'.length)) * blockSize;
    for (let off = 32; off < buf.length;) {
      const r = decodeRecord(buf, off);
      if (r.kind !== 'ok') break;
      out.set(base + off, Buffer.from(r.message.body));
      off += r.size;
    }
  }
  return out;
}

export interface HistoryReport {
  acknowledged: number;
  lost: number;
  twoBodies: number;
  skipped: number;
  longestGapMs: number;
  failures: Record<string, number>;
  readFailures: Record<string, number>;
  identical: boolean;
  /** Up to 10 examples of each broken rule, for the failure message. */
  examples: string[];
}

export interface FinalNode {
  name: string;
  dataDir: string;
}

/**
 * Checks the history against the stopped nodes' files. `master` is the final master, `inSync` the
 * in-sync set recorded in etcd at the end (the master included), `all` every node of the shard.
 */
export function checkHistory(
  w: Workload,
  nodes: { master: string; inSync: string[]; all: FinalNode[]; blockSize: number },
): HistoryReport {
  const examples: string[] = [];
  const records = new Map(nodes.all.map((n) => [n.name, scanRecords(n.dataDir, nodes.blockSize)]));
  const mustHold = [...new Set([nodes.master, ...nodes.inSync])];
  const lost: string[] = [];
  for (const [id, a] of w.acked) {
    const missing = mustHold.filter((n) => !records.get(n)?.get(id)?.includes(Buffer.from(a.text)));
    if (missing.length > 0) {
      const there = records.get(missing[0])?.get(id);
      lost.push(
        `${id} "${a.text}" not on ${missing.join(',')} (${there ? `holds ${JSON.stringify(there.toString('latin1').slice(-24))}` : 'no record there'})`,
      );
    }
  }
  // A msgId acknowledged for two saves: the first one cannot be there any more.
  for (const e of w.ackedTwice) lost.push(`${e} (acknowledged twice)`);
  const twoBodies: string[] = [...w.ackedTwice];
  const [first, ...rest] = [...records.entries()];
  for (const [id, body] of first[1]) {
    for (const [name, other] of rest) {
      const b = other.get(id);
      if (b && !b.equals(body)) twoBodies.push(`${id}: ${first[0]} and ${name} hold different records`);
    }
  }
  for (const [name, other] of rest)
    for (const [id, b] of other)
      for (const [name2, other2] of rest)
        if (name2 > name && other2.get(id) && !other2.get(id)!.equals(b))
          twoBodies.push(`${id}: ${name} and ${name2} hold different records`);
  const device = w.deviceFindings();
  twoBodies.push(...device.readOtherBody);
  const differences: string[] = [];
  const masterDir = nodes.all.find((n) => n.name === nodes.master)!.dataDir;
  for (const n of nodes.all) {
    if (n.name === nodes.master) continue;
    const d = blockDifference(masterDir, n.dataDir);
    if (d) differences.push(`${n.name} differs from the master ${nodes.master}: ${d}`);
  }
  for (const [label, list] of [
    ['lost', lost],
    ['two bodies', twoBodies],
    ['skipped', device.skipped],
    ['files', differences],
  ] as const)
    for (const e of list.slice(0, 10)) examples.push(`${label}: ${e}`);
  return {
    acknowledged: w.acked.size,
    lost: lost.length,
    twoBodies: twoBodies.length,
    skipped: device.skipped.length,
    longestGapMs: w.longestGapMs(),
    failures: Object.fromEntries(w.failures),
    readFailures: Object.fromEntries(w.readFailures),
    identical: differences.length === 0,
    examples,
  };
}

export function describeReport(name: string, r: HistoryReport): string {
  const kinds = (o: Record<string, number>) =>
    Object.entries(o)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ') || 'none';
  return (
    `${name}: ${r.acknowledged} acknowledged, ${r.lost} lost, ${r.twoBodies} ids with two bodies, ` +
    `${r.skipped} skipped ids, files ${r.identical ? 'identical' : 'DIFFERENT'}, longest stretch without ` +
    `an acknowledgement ${r.longestGapMs} ms; save failures: ${kinds(r.failures)}; read failures: ${kinds(r.readFailures)}`
  );
}
