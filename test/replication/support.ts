/** Helpers for the replication tests: data folders, file comparison, raw sync sockets, polling. */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { Cmd } from '../../src/format/constants.js';
import {
  decodeBatchBody,
  splitFrames,
  type SyncBatch,
  type SyncFrame,
} from '../../src/format/sync-frames.js';
import { recordSize } from '../../src/format/record.js';
import { MessageStore } from '../../src/storage/index.js';
import type { ImsClient } from '../../src/client/index.js';
import { waitFor } from '../support/wait.js';
import { APP, GROUPS, USERS, imBody, runWorkload } from '../support/workload.js';

export const SMALL_BLOCK = 1048576;

/** Writes a deterministic history into a data folder (offline, with the real engine). Returns the log end. */
export async function writeHistory(
  dir: string,
  saves: number,
  seed = 1,
  pad = 300,
  blockSize = SMALL_BLOCK,
): Promise<number> {
  const store = MessageStore.open({ root: dir, blockSize });
  runWorkload(store, saves, seed, pad);
  const end = store.nextId;
  await store.close();
  return end;
}

/** message_N files of a folder, in block order. */
export function blockNames(dir: string): string[] {
  return fs
    .readdirSync(dir)
    .filter((f) => /^message_\d+$/.test(f))
    .sort((a, b) => Number(a.slice(8)) - Number(b.slice(8)));
}

/** Null when the slave's block files equal the master's byte for byte, else what differs. */
export function blockDifference(masterDir: string, slaveDir: string): string | null {
  const m = blockNames(masterDir);
  const s = blockNames(slaveDir);
  if (m.join() !== s.join()) return `blocks ${m.join()} vs ${s.join()}`;
  for (const name of m) {
    const a = fs.readFileSync(path.join(masterDir, name));
    const b = fs.readFileSync(path.join(slaveDir, name));
    if (!a.equals(b)) return `${name}: ${a.length} vs ${b.length} bytes`;
  }
  return null;
}

export async function waitIdentical(masterDir: string, slaveDir: string, timeoutMs = 20000): Promise<void> {
  let diff: string | null = 'not compared';
  try {
    await waitFor(() => (diff = blockDifference(masterDir, slaveDir)) === null, {
      what: 'identical block files',
      timeoutMs,
      intervalMs: 100,
    });
  } catch {
    assert.fail(`slave files never matched the master's: ${diff}`);
  }
}

/** Every non-overlapping run of zero bytes of at least `min` bytes inside records (padding shows as these). */
export function assertNoZeroPadding(dir: string, blockSize: number): void {
  for (const name of blockNames(dir)) {
    const store = fs.readFileSync(path.join(dir, name));
    // Walk the records: each must start with MAGIC right where the previous one ended.
    let off = 32;
    while (off < store.length) {
      assert.equal(
        store.readUInt32BE(off),
        0x494d494d,
        `${name} offset ${off}: not a record (padding or garbage)`,
      );
      off += recordSize(store.readInt32BE(off + 4));
    }
    assert.equal(off, store.length, `${name} ends inside a record`);
    assert.ok(store.length <= blockSize);
  }
}

/** A raw sync connection: sends bytes, collects frames. */
export class RawSyncSocket {
  readonly socket: net.Socket;
  private buf = Buffer.alloc(0);
  readonly frames: SyncFrame[] = [];
  closed = false;
  problem: string | null = null;

  private constructor(socket: net.Socket, read: boolean) {
    this.socket = socket;
    socket.on('close', () => (this.closed = true));
    socket.on('error', () => undefined);
    if (read) {
      socket.on('data', (chunk: Buffer) => {
        this.buf = Buffer.concat([this.buf, chunk]);
        const r = splitFrames(this.buf);
        this.frames.push(...r.frames.map((f) => ({ ...f, body: Buffer.from(f.body) })));
        this.buf = this.buf.subarray(r.rest);
        if (r.problem) this.problem = r.problem;
      });
    } else {
      socket.pause();
    }
  }

  /** `read: false` gives a slave that never reads (a stalled slave). */
  static connect(port: number, read = true): Promise<RawSyncSocket> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => resolve(new RawSyncSocket(s, read)));
      s.once('error', reject);
    });
  }

  send(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  batches(): SyncBatch[] {
    return this.frames.map((f) => {
      assert.equal(f.cmd, Cmd.STORAGE_SYNC_MESSAGE_BATCH);
      const d = decodeBatchBody(f.body);
      assert.ok(d.ok, d.ok ? '' : d.problem);
      return d.value;
    });
  }

  /** Records received so far as [id, framed message bytes]. */
  records(blockSize: number): { id: number; cmd: number; body: Buffer }[] {
    const out: { id: number; cmd: number; body: Buffer }[] = [];
    for (const b of this.batches()) {
      let id = b.firstId;
      for (const m of b.messages) {
        const size = recordSize(m.body.length);
        if ((id % blockSize) + size > blockSize) id = (Math.floor(id / blockSize) + 1) * blockSize + 32;
        out.push({ id, cmd: m.cmd, body: m.body });
        id += size;
      }
    }
    return out;
  }

  close(): void {
    this.socket.destroy();
  }
}

/** The SyncMessage / SyncGroupMessage answers of a server for the workload's users and groups. */
export async function queryAnswers(client: ImsClient): Promise<string> {
  const out: unknown[] = [];
  const show = (r: {
    messages: { msgId: number; deviceId: bigint; cmd: number; raw: Buffer }[];
    lastMsgId: number;
    hasMore: boolean;
  }) => [
    r.lastMsgId,
    r.hasMore,
    r.messages.map((m) => `${m.msgId}/${m.deviceId}/${m.cmd}/${m.raw.toString('base64')}`),
  ];
  for (const uid of USERS) {
    out.push(['sync', uid, show(await client.syncMessage({ appId: APP, uid, deviceId: 0, lastMsgId: 0 }))]);
  }
  for (const g of GROUPS) {
    out.push([
      'group',
      g,
      show(
        await client.syncGroupMessage({
          appId: APP,
          uid: USERS[0],
          deviceId: 0,
          groupId: g,
          lastMsgId: 0,
          timestamp: 0,
        }),
      ),
    ]);
  }
  return JSON.stringify(out, (_, v) => (typeof v === 'bigint' ? v.toString() : v));
}

/** One live write over RPC: a peer IM between two workload users. */
export async function writePeer(client: ImsClient, i: number, pad = 0): Promise<number> {
  const a = USERS[i % USERS.length];
  const b = USERS[(i * 7 + 3) % USERS.length];
  const r = await client.savePeerMessage({
    appId: APP,
    uid: b,
    deviceId: 11,
    cmd: Cmd.IM,
    raw: imBody(a, b, `live ${i} ${'y'.repeat(pad)}`),
  });
  return r.msgId;
}

export async function httpJson(url: string): Promise<Record<string, unknown>> {
  const res = await fetch(url);
  return (await res.json()) as Record<string, unknown>;
}
