/**
 * The storage surface replication streams through: readLog (one pread per run of records, each checked
 * against its checksum) on the master, applyReplicatedRecords (one file write per batch) on the slave.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { BLOCK_HEADER_SIZE, Cmd } from '../../src/format/constants.js';
import { recordSize, type RawMessage } from '../../src/format/record.js';
import { MessageStore } from '../../src/storage/index.js';
import { removeDir, tempDir } from '../support/fixtures.js';
import { APP, imBody, runWorkload } from '../support/workload.js';

const BLOCK = 64 * 1024;
const dirs: string[] = [];
after(() => dirs.forEach(removeDir));
function dir(): string {
  const d = tempDir('ims-repl-io-');
  dirs.push(d);
  return d;
}

/** Every record of the log, one read per record (the reference readLog must agree with). */
function walk(store: MessageStore): { id: number; msg: RawMessage }[] {
  const out: { id: number; msg: RawMessage }[] = [];
  let id = store.firstId;
  while (id < store.nextId) {
    const r = store.readLog(id, store.nextId, 1, 1);
    if (r.records.length === 0) break;
    out.push(r.records[0]);
    id = r.next;
  }
  return out;
}

/** The whole log through readLog in batches of at most `count` records and `bytes` bytes. */
function stream(store: MessageStore, count: number, bytes: number): { id: number; msg: RawMessage }[][] {
  const batches: { id: number; msg: RawMessage }[][] = [];
  let id = store.firstId;
  while (id < store.nextId) {
    const r = store.readLog(id, store.nextId, count, bytes);
    assert.ok(r.next > id, `readLog advances at ${id}`);
    if (r.records.length > 0) batches.push(r.records);
    id = r.next;
  }
  return batches;
}

describe('replication I/O in storage', () => {
  it('readLog returns what one read per record returns, in batches within the limits that never span two blocks', async () => {
    const store = MessageStore.open({ root: dir(), blockSize: BLOCK });
    try {
      runWorkload(store, 1500, 7);
      const reference = walk(store);
      assert.ok(store.files.writeBlock >= 3, `${store.files.writeBlock + 1} blocks`);
      for (const [count, bytes] of [
        [1000, 16 * 1024 * 1024],
        [7, 1 << 20],
        [5000, 3000],
        [64, 1],
      ]) {
        const batches = stream(store, count, bytes);
        const flat = batches.flat();
        assert.equal(flat.length, reference.length, `${count} records / ${bytes} bytes`);
        flat.forEach((r, i) => {
          assert.equal(r.id, reference[i].id);
          assert.deepEqual({ ...r.msg, body: Buffer.from(r.msg.body) }, reference[i].msg);
        });
        for (const b of batches) {
          assert.ok(b.length <= count);
          const size = b.reduce((s, r) => s + recordSize(r.msg.body.length), 0);
          assert.ok(b.length === 1 || size - recordSize(b.at(-1)!.msg.body.length) < bytes);
          assert.equal(store.files.blockOf(b[0].id), store.files.blockOf(b.at(-1)!.id), 'one block');
        }
      }
      // Stops before endId, at a record boundary.
      const end = reference[10].id;
      const r = store.readLog(reference[0].id, end, 1000, 1 << 20);
      assert.equal(r.records.length, 10);
      assert.equal(r.next, end);
    } finally {
      await store.close();
    }
  });

  it('readLog refuses a record whose bytes disagree with its checksum, naming it', async () => {
    const root = dir();
    const store = MessageStore.open({ root, blockSize: BLOCK });
    runWorkload(store, 50, 3);
    const victim = store.savePeerMessage(APP, 2n, 1n, Cmd.IM, imBody(1n, 2n, 'the victim')).msgId;
    runWorkload(store, 50, 4);
    await store.close();
    const block = Math.floor(victim / BLOCK);
    const file = path.join(root, `message_${block}`);
    const fd = fs.openSync(file, 'r+');
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, (victim % BLOCK) + 16 + 30);
    b[0] ^= 0x20;
    fs.writeSync(fd, b, 0, 1, (victim % BLOCK) + 16 + 30);
    fs.closeSync(fd);
    const reopened = MessageStore.open({ root, blockSize: BLOCK });
    try {
      const first = block * BLOCK + BLOCK_HEADER_SIZE;
      assert.throws(
        () => reopened.readLog(first, reopened.nextId, 5000, 1 << 20),
        (err: Error) =>
          err.name === 'CorruptRecordError' &&
          err.message.includes(`message_${block} offset ${victim % BLOCK}`) &&
          err.message.includes(`message id ${victim}`),
      );
      // The records before it are still read.
      const before = reopened.readLog(first, victim, 5000, 1 << 20);
      assert.equal(before.next, victim);
    } finally {
      await reopened.close();
    }
  });

  it('applyReplicatedRecords writes a batch at its ids (rolling blocks), skips what it has and refuses a gap', async () => {
    const master = MessageStore.open({ root: dir(), blockSize: BLOCK });
    const slave = MessageStore.open({ root: dir(), blockSize: BLOCK });
    try {
      runWorkload(master, 1200, 11);
      const batches = stream(master, 300, 1 << 20);
      let written = 0;
      for (const b of batches) {
        written += slave.applyReplicatedRecords(
          b.map((r) => r.id),
          b.map((r) => r.msg),
        );
      }
      assert.equal(slave.nextId, master.nextId);
      assert.equal(written, walk(master).length);
      // Again: everything is skipped.
      const again = batches[1];
      assert.equal(
        slave.applyReplicatedRecords(
          again.map((r) => r.id),
          again.map((r) => r.msg),
        ),
        0,
      );
      assert.deepEqual(
        slave.syncMessage(APP, 1001n, 0).messages.map((m) => m.msgId),
        master.syncMessage(APP, 1001n, 0).messages.map((m) => m.msgId),
      );
      await master.flush();
      await slave.flush();
      for (const r of walk(master)) assert.deepEqual(slave.readRecord(r.id), r.msg);
      // A batch that does not start at the log end is refused and writes nothing.
      const end = slave.nextId;
      const msg = { cmd: Cmd.IM, seq: 0, version: 1, flag: 0, body: imBody(1n, 2n, 'gap') };
      assert.throws(() => slave.applyReplicatedRecords([end + 100], [msg]), /refusing to leave a gap/);
      assert.equal(slave.nextId, end);
    } finally {
      await master.close();
      await slave.close();
    }
  });
});
