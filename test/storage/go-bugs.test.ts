/**
 * Go ims 2.0 storage bugs 1-16 (docs/go-ims-bugs.md), each shown fixed. Bugs covered in
 * depth elsewhere point there: 9 (recovery.test.ts), 10 (test/cli), 12 (kill9.test.ts, test/status).
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { Cmd, MAX_BODY_SIZE } from '../../src/format/constants.js';
import { readIndexState } from '../../src/storage/index-files.js';
import { MessageStore, StorageInputError } from '../../src/storage/index.js';
import { removeDir, tempDir } from '../support/fixtures.js';
import { APP, answers, imBody, runWorkload } from '../support/workload.js';

const dirs: string[] = [];
after(() => dirs.forEach(removeDir));
function folder(): string {
  const d = tempDir();
  dirs.push(d);
  return d;
}

/** Sorted index entries of a folder's index files. */
function indexEntries(dir: string): string {
  const read = (name: string, size: number) => {
    const data = fs.readFileSync(path.join(dir, name));
    const rows: string[] = [];
    for (let off = 0; off < data.length; off += size)
      rows.push(data.subarray(off, off + size).toString('hex'));
    return rows.sort();
  };
  return JSON.stringify([read('peer_index', 32), read('group_index', 24)]);
}

describe('Go storage bugs, fixed', () => {
  it('1: a user with only group messages does not move the repair position backwards; repair equals rebuild', async () => {
    const dir = folder();
    const store = MessageStore.open({ root: dir, blockSize: 64 * 1024 });
    runWorkload(store, 200, 11);
    await store.saveIndex();
    for (let i = 0; i < 300; i++) store.savePeerMessage(APP, 77n, 1n, Cmd.GROUP_IM, imBody(1n, 5n, `g${i}`));
    const expected = answers(store);
    await store.close({ saveIndex: false });
    assert.ok(readIndexState(dir)!.logEnd > 32);
    const repaired = MessageStore.open({ root: dir, blockSize: 64 * 1024 });
    assert.equal(repaired.openReport!.index, 'repaired');
    assert.equal(answers(repaired), expected);
    assert.equal(repaired.syncMessage(APP, 77n, 0).messages.length, 300);
    await repaired.close();
    const repairedIndex = indexEntries(dir);
    for (const f of ['peer_index', 'group_index', 'index_state']) fs.rmSync(path.join(dir, f));
    const rebuilt = MessageStore.open({ root: dir, blockSize: 64 * 1024 });
    assert.equal(answers(rebuilt), expected);
    await rebuilt.close();
    assert.equal(indexEntries(dir), repairedIndex);
  });

  it('2, 3: repair and rebuild add the block base to every entry (peer, old MSG_OFFLINE and group) in later blocks', async () => {
    const dir = folder();
    const store = MessageStore.open({ root: dir, blockSize: 64 * 1024 });
    runWorkload(store, 600, 12);
    assert.ok(store.files.writeBlock >= 2);
    const expected = answers(store);
    await store.close();
    for (const f of ['peer_index', 'group_index', 'index_state']) fs.rmSync(path.join(dir, f));
    const rebuilt = MessageStore.open({ root: dir, blockSize: 64 * 1024 });
    assert.equal(answers(rebuilt), expected);
    await rebuilt.close();
  });

  it('4: GetNewCount reads MSG_OFFLINE_V2 entries and ignores the user own messages', async () => {
    const store = MessageStore.open({ root: folder() });
    const fromPeer = store.savePeerMessage(APP, 1n, 0n, Cmd.IM, imBody(2n, 1n, 'to 1'));
    assert.equal(store.getNewCount(APP, 1n, 0), 1);
    assert.equal(store.getNewCount(APP, 1n, fromPeer.msgId), 0);
    const own = store.savePeerMessage(APP, 1n, 0n, Cmd.IM, imBody(1n, 2n, 'from 1'));
    assert.equal(store.getNewCount(APP, 1n, fromPeer.msgId), 0, 'a message the user sent is not new to it');
    assert.equal(store.getNewCount(APP, 1n, 0), 1, 'the older message from 2 is still new');
    assert.ok(own.msgId > fromPeer.msgId);
    await store.close();
  });

  it('5: group entries written after the index save are repaired even when peer entries follow them', async () => {
    const dir = folder();
    const store = MessageStore.open({ root: dir });
    store.saveGroupMessage(APP, 9n, 1n, Cmd.GROUP_IM, imBody(1n, 9n, 'before'));
    await store.saveIndex();
    const g = store.saveGroupMessage(APP, 9n, 1n, Cmd.GROUP_IM, imBody(1n, 9n, 'after the save'));
    for (let i = 0; i < 20; i++) store.savePeerMessage(APP, 3n, 1n, Cmd.IM, imBody(1n, 3n, `p${i}`));
    await store.close({ saveIndex: false });
    const reopened = MessageStore.open({ root: dir });
    const r = reopened.syncGroupMessage(APP, 9n, 0, 0);
    assert.deepEqual(
      r.messages.map((m) => m.raw.subarray(24).toString()),
      ['{"text":"after the save"}', '{"text":"before"}'],
    );
    assert.equal(r.lastMsgId, g.msgId);
    const next = reopened.saveGroupMessage(APP, 9n, 1n, Cmd.GROUP_IM, imBody(1n, 9n, 'next'));
    assert.equal(next.prevMsgId, g.msgId, 'the next group message chains onto the repaired head');
    await reopened.close();
  });

  it('7: a truncated index file is not half-read: the index is rebuilt and the reason logged', async () => {
    const dir = folder();
    const store = MessageStore.open({ root: dir });
    runWorkload(store, 100, 13);
    const expected = answers(store);
    await store.close();
    fs.truncateSync(path.join(dir, 'peer_index'), fs.statSync(path.join(dir, 'peer_index')).size - 5);
    const warnings: string[] = [];
    const reopened = MessageStore.open({
      root: dir,
      logger: { log: () => {}, warn: (m) => warnings.push(m), error: () => {} },
    });
    assert.equal(reopened.openReport!.index, 'rebuilt');
    assert.match(reopened.openReport!.reason!, /peer_index: size \d+ is not a multiple of the 32-byte entry/);
    assert.equal(answers(reopened), expected);
    await reopened.close();
  });

  it('8: a failed index save leaves the previous index files intact and the store working', async () => {
    const dir = folder();
    const store = MessageStore.open({ root: dir });
    runWorkload(store, 50, 14);
    await store.saveIndex();
    const before = fs.readFileSync(path.join(dir, 'peer_index'));
    runWorkload(store, 50, 15);
    fs.mkdirSync(path.join(dir, 'peer_index_t')); // the temp file cannot be created
    await assert.rejects(store.saveIndex(), /EISDIR|illegal operation/);
    assert.deepEqual(fs.readFileSync(path.join(dir, 'peer_index')), before);
    fs.rmdirSync(path.join(dir, 'peer_index_t'));
    const expected = answers(store);
    await store.close();
    const reopened = MessageStore.open({ root: dir });
    assert.equal(answers(reopened), expected);
    await reopened.close();
  });

  it('11: a saved index never points past the durable log, and an index ahead of the log is rebuilt', async () => {
    const dir = folder();
    const store = MessageStore.open({ root: dir, blockSize: 64 * 1024 });
    runWorkload(store, 100, 16);
    await store.saveIndex();
    assert.ok(store.files.durableId >= readIndexState(dir)!.logEnd);
    const expectedEarly = answers(store);
    const cutAt = store.nextId;
    runWorkload(store, 100, 17);
    await store.saveIndex();
    await store.close();
    // Simulate a log that lost its end while the index survived (what Go's ordering allowed).
    const blocks = fs.readdirSync(dir).filter((f) => /^message_\d+$/.test(f));
    for (const b of blocks)
      if (Number(b.slice(8)) > Math.floor(cutAt / (64 * 1024))) fs.rmSync(path.join(dir, b));
    fs.truncateSync(path.join(dir, `message_${Math.floor(cutAt / (64 * 1024))}`), cutAt % (64 * 1024));
    const reopened = MessageStore.open({ root: dir, blockSize: 64 * 1024 });
    assert.equal(reopened.openReport!.index, 'rebuilt');
    assert.match(reopened.openReport!.reason!, /past the end of the log/);
    assert.equal(answers(reopened), expectedEarly);
    await reopened.close();
  });

  it('14: a body of 32 KiB or more is refused; the largest allowed one is stored and read back', async () => {
    const store = MessageStore.open({ root: folder() });
    const before = store.nextId;
    assert.throws(
      () => store.savePeerMessage(APP, 1n, 0n, Cmd.SYSTEM, Buffer.alloc(MAX_BODY_SIZE + 1, 0x61)),
      StorageInputError,
    );
    assert.equal(store.nextId, before, 'nothing was written');
    const body = Buffer.alloc(MAX_BODY_SIZE, 0x62);
    const r = store.savePeerMessage(APP, 1n, 0n, Cmd.SYSTEM, body);
    assert.deepEqual(store.syncMessage(APP, 1n, 0).messages[0].raw, body);
    assert.equal(r.msgId, before);
    await store.close();
  });

  it('15: id 0 is never read as a message: it ends a chain and a direct read is an explicit error', async () => {
    const store = MessageStore.open({ root: folder() });
    store.savePeerMessage(APP, 1n, 0n, Cmd.IM, imBody(2n, 1n, 'only'));
    assert.equal(store.syncMessage(APP, 1n, 0).messages.length, 1);
    assert.throws(() => store.readRecord(0), /points into the block header/);
    await store.close();
  });

  it('16: an unreadable group message is a clear error, not a crash', async () => {
    const dir = folder();
    const store = MessageStore.open({ root: dir });
    const g = store.saveGroupMessage(APP, 4n, 1n, Cmd.GROUP_IM, imBody(1n, 4n, 'x'));
    await store.close();
    const buf = fs.readFileSync(path.join(dir, 'message_0'));
    buf.writeInt32BE(40000, g.msgId + 4); // the message's length field
    fs.writeFileSync(path.join(dir, 'message_0'), buf);
    fs.writeFileSync(path.join(dir, 'unused'), '');
    const reopened = MessageStore.open({ root: dir });
    assert.throws(
      () => reopened.syncGroupMessage(APP, 4n, 0, 0),
      new RegExp(`message_0 offset ${g.msgId}: bad body length 40000`),
    );
    await reopened.close();
  });
});
