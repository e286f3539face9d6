/**
 * v4 queues beyond what the Go fixture shows: paging across an upgrade's switch point (v2 entries have
 * no batch marks), counts from sync keys on both sides of it, hard_limit, and a slave adopting v4.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { Cmd } from '../../src/format/constants.js';
import { MessageStore, type HistoryMessage } from '../../src/storage/index.js';
import { removeDir, tempDir } from '../support/fixtures.js';

const APP = 7n;
const UID = 10001n;
const imBody = (i: number) => Buffer.concat([Buffer.alloc(24), Buffer.from(`message ${i}`)]);

function syncPages(store: MessageStore, since = 0): HistoryMessage[][] {
  const pages: HistoryMessage[][] = [];
  for (;;) {
    const r = store.syncMessage(APP, UID, since);
    pages.push(r.messages);
    if (!r.hasMore) return pages;
    since = r.lastMsgId;
  }
}

describe('v4 queues across an upgrade from v2', () => {
  const dirs: string[] = [];
  after(() => dirs.forEach(removeDir));

  it('pages a 5,100-entry queue (3,500 written as v2) oldest page first, nothing skipped, counts exact', async () => {
    const dir = tempDir();
    dirs.push(dir);
    const ids: number[] = [];
    let store = MessageStore.open({ root: dir });
    for (let i = 0; i < 3500; i++) ids.push(store.savePeerMessage(APP, UID, 1n, Cmd.IM, imBody(i)).msgId);
    await store.flush();
    store.switchToV4();
    assert.equal(store.getNewCount(APP, UID, 0), 3500);
    let pages = syncPages(store);
    assert.deepEqual(
      pages.map((p) => p.length),
      [3000, 500],
    );
    assert.equal(pages[0][0].msgId, ids[2999], 'the first page ends at the 3000th message');
    for (let i = 3500; i < 5100; i++) ids.push(store.savePeerMessage(APP, UID, 1n, Cmd.IM, imBody(i)).msgId);
    await store.close();

    store = MessageStore.open({ root: dir });
    try {
      pages = syncPages(store);
      assert.deepEqual(
        pages.map((p) => p.length),
        [3000, 2100],
      );
      const delivered = pages
        .flat()
        .map((m) => m.msgId)
        .sort((a, b) => a - b);
      assert.deepEqual(delivered, ids);
      assert.equal(store.getNewCount(APP, UID, 0), 5100);
      assert.equal(store.getNewCount(APP, UID, ids[2999]), 2100, 'from a v2-era key');
      assert.equal(store.getNewCount(APP, UID, ids[4499]), 600, 'from a v4 key');
      assert.equal(store.getNewCount(APP, UID, ids[4499] + 1), 0, 'not a message id');
      assert.deepEqual(
        syncPages(store, ids[4999]).map((p) => p.length),
        [100],
      );
    } finally {
      await store.close();
    }
  });

  it('hard_limit: a backlog past it is paged one-to-one messages first', async () => {
    const dir = tempDir();
    dirs.push(dir);
    const store = MessageStore.open({ root: dir, queueFormat: 'v4', limit: 1000, hardLimit: 2000 });
    try {
      for (let i = 0; i < 7000; i++)
        store.savePeerMessage(APP, UID, 1n, i % 2 ? Cmd.GROUP_IM : Cmd.IM, imBody(i));
      const r = store.syncMessage(APP, UID, 0);
      assert.equal(r.messages.length, 1000);
      assert.equal(r.hasMore, true);
      // The walk starts at a batch mark and then follows the one-to-one chain only.
      assert.ok(r.messages.slice(1).every((m) => m.cmd === Cmd.IM));
    } finally {
      await store.close();
    }
  });

  it('an empty folder without a setting adopts v4 from the first v4 queue record a master sends', async () => {
    const masterDir = tempDir();
    const slaveDir = tempDir();
    dirs.push(masterDir, slaveDir);
    const master = MessageStore.open({ root: masterDir, queueFormat: 'v4' });
    const slave = MessageStore.open({ root: slaveDir });
    try {
      for (let i = 0; i < 50; i++) master.savePeerMessage(APP, UID, 1n, Cmd.IM, imBody(i));
      master.saveGroupMessage(APP, 100n, 1n, Cmd.GROUP_IM, imBody(1));
      assert.equal(slave.queueFormat, 'v2');
      const { records } = master.readLog(master.firstId, master.nextId, 1000, 1 << 30);
      for (const r of records) slave.applyReplicated(r.id, r.msg);
      assert.equal(slave.queueFormat, 'v4');
      assert.deepEqual(slave.syncMessage(APP, UID, 0), master.syncMessage(APP, UID, 0));
      assert.equal(slave.getNewCount(APP, UID, 0), 50);
      assert.deepEqual(slave.peerHead(APP, UID), master.peerHead(APP, UID));
    } finally {
      await master.close();
      await slave.close();
    }
  });

  it('a v2 slave whose master is upgraded switches with it at the first v4 record, history kept', async () => {
    const masterDir = tempDir();
    const slaveDir = tempDir();
    dirs.push(masterDir, slaveDir);
    const master = MessageStore.open({ root: masterDir });
    const slave = MessageStore.open({ root: slaveDir });
    const follow = () => {
      const { records } = master.readLog(slave.nextId, master.nextId, 100_000, 1 << 30);
      for (const r of records) slave.applyReplicated(r.id, r.msg);
    };
    try {
      for (let i = 0; i < 30; i++) master.savePeerMessage(APP, UID, 1n, Cmd.IM, imBody(i));
      follow();
      assert.equal(slave.queueFormat, 'v2');
      await master.flush();
      master.switchToV4();
      const since = master.nextId;
      for (let i = 30; i < 40; i++) master.savePeerMessage(APP, UID, 1n, Cmd.IM, imBody(i));
      follow();
      assert.equal(slave.queueFormat, 'v4');
      assert.deepEqual(slave.queueFormatSwitch, { since, from: 'v2' });
      assert.equal(slave.getNewCount(APP, UID, 0), 40);
      assert.deepEqual(slave.syncMessage(APP, UID, 0), master.syncMessage(APP, UID, 0));
      assert.deepEqual(slave.peerHead(APP, UID), master.peerHead(APP, UID));
    } finally {
      await master.close();
      await slave.close();
    }
  });

  it('counts survive retention: a rebuild after the oldest blocks are deleted still counts the whole queue', async () => {
    const dir = tempDir();
    dirs.push(dir);
    const block = 64 * 1024;
    let store = MessageStore.open({ root: dir, queueFormat: 'v4', blockSize: block });
    const ids: number[] = [];
    for (let i = 0; i < 2500; i++) ids.push(store.savePeerMessage(APP, UID, 1n, Cmd.IM, imBody(i)).msgId);
    const r = store.applyRetention({ maxAgeMs: 0, maxBytes: 3 * block });
    assert.ok(r.deleted.length > 0, 'retention deleted blocks');
    const head = store.peerHead(APP, UID);
    assert.equal(store.getNewCount(APP, UID, 0), 2500);
    await store.close();
    for (const f of ['peer_index.v3', 'group_index.v2', 'index_state']) fs.rmSync(path.join(dir, f));
    store = MessageStore.open({ root: dir, blockSize: block });
    try {
      assert.equal(store.openReport!.index, 'rebuilt');
      assert.equal(store.getNewCount(APP, UID, 0), 2500);
      assert.equal(store.getNewCount(APP, UID, ids[2400]), 99);
      assert.deepEqual(
        store.peerHead(APP, UID).slice(1, 5),
        head.slice(1, 5),
        'last_id, last_peer_id, batch, seq',
      );
    } finally {
      await store.close();
    }
  });

  it('a folder holding MSG_OFFLINE_V3 queue records is refused, never served as empty', async () => {
    const dir = tempDir();
    dirs.push(dir);
    const store = MessageStore.open({ root: dir });
    store.savePeerMessage(APP, UID, 1n, Cmd.IM, imBody(0));
    const { records } = store.readLog(store.firstId, store.nextId, 10, 1 << 20);
    await store.close();
    // Rewrite the queue record's cmd byte to 249 (a GoBelieve version between 2.0 and the newest).
    const file = path.join(dir, 'message_0');
    const bytes = fs.readFileSync(file);
    bytes[records[1].id + 12] = Cmd.OFFLINE_V3;
    fs.writeFileSync(file, bytes);
    for (const f of ['peer_index', 'group_index', 'index_state']) fs.rmSync(path.join(dir, f));
    fs.rmSync(path.join(dir, 'checksums'), { recursive: true, force: true });
    assert.throws(
      () => MessageStore.open({ root: dir }),
      /holds MSG_OFFLINE_V3 queue records .* which ims cannot read; it will not serve the folder as if its queues were empty/,
    );
  });

  it('a slave pinned to queue_format=v2 refuses v4 records, naming both, and writes nothing', async () => {
    const masterDir = tempDir();
    const slaveDir = tempDir();
    dirs.push(masterDir, slaveDir);
    const master = MessageStore.open({ root: masterDir, queueFormat: 'v4' });
    const slave = MessageStore.open({ root: slaveDir, queueFormat: 'v2' });
    try {
      master.savePeerMessage(APP, UID, 1n, Cmd.IM, imBody(0));
      const { records } = master.readLog(master.firstId, master.nextId, 10, 1 << 20);
      slave.applyReplicated(records[0].id, records[0].msg);
      const end = slave.nextId;
      assert.throws(
        () => slave.applyReplicated(records[1].id, records[1].msg),
        /v4 queue record .* queue_format is v2/,
      );
      assert.equal(slave.nextId, end);
    } finally {
      await master.close();
      await slave.close();
    }
  });
});
