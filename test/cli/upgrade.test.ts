/**
 * `ims upgrade --queue-format v4` on the Go 2.0 fixture: every message a user could sync before, they
 * can sync after (paging oldest first), counts become exact, old sync keys keep working, new saves chain
 * onto the old history, and the folder refuses the upgrade while a server holds it.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Cmd } from '../../src/format/constants.js';
import { decodeQueueEntry } from '../../src/format/queue-entries.js';
import { MessageStore, type HistoryMessage } from '../../src/storage/index.js';
import { copyFixtureDir, removeDir } from '../support/fixtures.js';
import { killAll, startServer, type ServerProcess } from '../support/server-process.js';
import { ims } from '../support/cli-runner.js';

type Key = string;
const key = (appid: bigint, uid: bigint): Key => `${appid}:${uid}`;
const fingerprint = (m: HistoryMessage) => `${m.msgId}/${m.cmd}/${m.deviceId}/${m.raw.toString('base64')}`;

/** Every user's queue entries, oldest first, read from the log (message ids). */
function queues(store: MessageStore): Map<Key, { appid: bigint; uid: bigint; msgIds: number[] }> {
  const out = new Map<Key, { appid: bigint; uid: bigint; msgIds: number[] }>();
  for (let id = store.firstId; id < store.nextId;) {
    const { records, next } = store.readLog(id, store.nextId, 10_000, 1 << 30);
    if (records.length === 0) break;
    for (const { msg } of records) {
      const e = decodeQueueEntry(msg.cmd, msg.flag, msg.body);
      if (!e || e.family !== 'peer') continue;
      const k = key(e.appid, e.owner);
      if (!out.has(k)) out.set(k, { appid: e.appid, uid: e.owner, msgIds: [] });
      out.get(k)!.msgIds.push(e.msgid);
    }
    id = next;
  }
  return out;
}

/** Pages SyncMessage from `since` until hasMore is false; returns every message in the order delivered. */
function syncAll(store: MessageStore, appid: bigint, uid: bigint, since = 0): HistoryMessage[] {
  const all: HistoryMessage[] = [];
  for (let pages = 0; pages < 1000; pages++) {
    const r = store.syncMessage(appid, uid, since);
    all.push(...r.messages);
    if (!r.hasMore) return all;
    since = r.lastMsgId;
  }
  throw new Error('sync never ended');
}

describe('ims upgrade --queue-format v4 on the Go 2.0 fixture', () => {
  let dir: string;
  const servers: ServerProcess[] = [];
  let before2: Map<Key, string[]>;
  let entries: ReturnType<typeof queues>;
  let logEnd: number;

  before(async () => {
    dir = copyFixtureDir('clean');
    // What a client could sync before: every message of the queue (a limit above every queue's size).
    const store = MessageStore.open({ root: dir, limit: 1_000_000 });
    entries = queues(store);
    before2 = new Map(
      [...entries.values()].map((q) => [
        key(q.appid, q.uid),
        syncAll(store, q.appid, q.uid).map(fingerprint),
      ]),
    );
    logEnd = store.nextId;
    await store.close();
  });
  after(async () => {
    await killAll(servers);
    if (dir) removeDir(dir);
  });

  it('refuses while a server holds the folder, changing nothing', async () => {
    const server = await startServer({ dataDir: dir });
    servers.push(server);
    const r = await ims('upgrade', '--queue-format', 'v4', dir);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /lock|held|in use/i);
    await server.stop();
    assert.ok(!fs.existsSync(path.join(dir, 'queue_format')));
    assert.ok(fs.existsSync(path.join(dir, 'peer_index')));
  });

  it('switches the folder, recording where, and says so', async () => {
    const r = await ims('upgrade', '--queue-format', 'v4', dir);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`switched from queue_format v2 to v4 at id ${logEnd}`));
    const record = JSON.parse(fs.readFileSync(path.join(dir, 'queue_format'), 'utf8')) as Record<
      string,
      unknown
    >;
    assert.equal(record.format, 'v4');
    assert.equal(record.since, logEnd);
    assert.equal(record.from, 'v2');
    assert.ok(
      fs.existsSync(path.join(dir, 'peer_index.v3')) && fs.existsSync(path.join(dir, 'group_index.v2')),
    );
    assert.ok(!fs.existsSync(path.join(dir, 'peer_index')), 'the stale v2 index is removed');
    const again = await ims('upgrade', '--queue-format', 'v4', dir);
    assert.equal(again.code, 0);
    assert.match(again.stdout, /already serves queue_format v4/);
  });

  it('keeps every message syncable (oldest page first) and counts every entry exactly', async () => {
    const store = MessageStore.open({ root: dir });
    try {
      assert.equal(store.queueFormat, 'v4');
      assert.equal(store.openReport!.index, 'loaded');
      let checked = 0;
      for (const q of entries.values()) {
        const after2 = syncAll(store, q.appid, q.uid).map(fingerprint);
        assert.deepEqual(
          [...after2].sort(),
          [...before2.get(key(q.appid, q.uid))!].sort(),
          `${q.appid}:${q.uid} syncs the same messages`,
        );
        const n = q.msgIds.length;
        assert.equal(store.getNewCount(q.appid, q.uid, 0), n, `${q.appid}:${q.uid} count from 0`);
        // A sync key a client holds from before the upgrade: the entries after it, exactly.
        const k = Math.floor(n / 2);
        assert.equal(
          store.getNewCount(q.appid, q.uid, q.msgIds[k]),
          n - 1 - k,
          `${q.appid}:${q.uid} count from #${k}`,
        );
        checked++;
      }
      assert.ok(checked > 20, `only ${checked} users`);
      const biggest = [...entries.values()].sort((a, b) => b.msgIds.length - a.msgIds.length)[0];
      assert.ok(biggest.msgIds.length > 0);
    } finally {
      await store.close();
    }
  });

  it('chains new saves onto the old history: prevMsgId, sync from an old key, count, v4 records', async () => {
    const store = MessageStore.open({ root: dir });
    try {
      const q = [...entries.values()][0];
      const newest = q.msgIds[q.msgIds.length - 1];
      const body = Buffer.concat([Buffer.alloc(24), Buffer.from('after the upgrade')]);
      const saved = store.savePeerMessage(q.appid, q.uid, 1n, Cmd.IM, body);
      assert.equal(saved.prevMsgId, newest);
      const rec = store.readLog(saved.msgId, store.nextId, 2, 1 << 20).records;
      assert.equal(rec[1].msg.cmd, Cmd.OFFLINE_V4);
      const entry = decodeQueueEntry(rec[1].msg.cmd, rec[1].msg.flag, rec[1].msg.body)!;
      assert.equal(entry.seq, q.msgIds.length + 1);
      const r = store.syncMessage(q.appid, q.uid, newest);
      assert.deepEqual(
        r.messages.map((m) => m.msgId),
        [saved.msgId],
      );
      assert.equal(r.hasMore, false);
      assert.equal(store.getNewCount(q.appid, q.uid, newest), 1);
      assert.equal(store.getNewCount(q.appid, q.uid, saved.msgId), 0);
    } finally {
      await store.close();
    }
  });

  it('a server given queue_format=v2 refuses to start on the upgraded folder, naming key and folder', async () => {
    const server = await startServer({ dataDir: dir, config: { queue_format: 'v2' }, waitReady: false });
    servers.push(server);
    const exit = await server.waitExit();
    assert.equal(exit.code, 1);
    assert.match(server.logText(), /queue_format=v2: .* holds v4 queues/);
  });
});
