import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { Cmd } from '../../src/format/constants.js';
import { MessageStore, StorageOpenError } from '../../src/storage/index.js';
import { DataDirLock, LOCK_FILE } from '../../src/storage/data-dir-lock.js';
import { removeDir, tempDir } from '../support/fixtures.js';
import { APP, answers, imBody, runWorkload } from '../support/workload.js';

/** Builds a folder with a workload, closed cleanly; returns its answers. */
async function buildFolder(dir: string, blockSize?: number): Promise<{ answers: string; end: number }> {
  const store = MessageStore.open({ root: dir, blockSize });
  runWorkload(store, 300, 3);
  const a = answers(store);
  const end = store.nextId;
  await store.close();
  return { answers: a, end };
}

describe('torn tail of the write block (Go refused to start: bug 9)', () => {
  const dirs: string[] = [];
  after(() => dirs.forEach(removeDir));

  it('cuts appended garbage, keeps it aside, and the next write goes where the cut began', async () => {
    const dir = tempDir();
    dirs.push(dir);
    const built = await buildFolder(dir);
    fs.appendFileSync(path.join(dir, 'message_0'), Buffer.from('IMIM garbage from a crash'));
    const store = MessageStore.open({ root: dir });
    const torn = store.openReport!.tornTail!;
    assert.equal(torn.offset, built.end);
    assert.equal(torn.bytes, 25);
    assert.equal(fs.readFileSync(torn.savedTo!).toString(), 'IMIM garbage from a crash');
    assert.equal(answers(store), built.answers);
    const r = store.savePeerMessage(APP, 5n, 1n, Cmd.IM, imBody(1n, 5n, 'after'));
    assert.equal(r.msgId, built.end);
    await store.close();
  });

  it('cuts a record torn in half (with its index entry already saved) and keeps earlier messages', async () => {
    const dir = tempDir();
    dirs.push(dir);
    const store = MessageStore.open({ root: dir });
    runWorkload(store, 200, 4);
    await store.saveIndex();
    const beforeLast = answers(store);
    const end = store.nextId;
    const last = store.savePeerMessage(APP, 1000n, 1n, Cmd.IM, imBody(1001n, 1000n, 'the torn one'));
    await store.close({ saveIndex: false });
    // Cut the last save (message + entry) in the middle of its message record.
    fs.truncateSync(path.join(dir, 'message_0'), last.msgId + 20);
    const reopened = MessageStore.open({ root: dir });
    assert.equal(reopened.openReport!.tornTail!.offset, end);
    assert.equal(reopened.openReport!.tornTail!.bytes, 20);
    assert.equal(reopened.nextId, end);
    assert.equal(answers(reopened), beforeLast);
    assert.equal(reopened.savePeerMessage(APP, 1000n, 1n, Cmd.IM, imBody(1001n, 1000n, 'again')).msgId, end);
    await reopened.close();
  });

  it('recovers a write block whose header is incomplete', async () => {
    const dir = tempDir();
    dirs.push(dir);
    await buildFolder(dir, 64 * 1024);
    const blocks = fs
      .readdirSync(dir)
      .filter((f) => /^message_\d+$/.test(f))
      .sort((a, b) => Number(a.slice(8)) - Number(b.slice(8)));
    const next = Number(blocks[blocks.length - 1].slice(8)) + 1;
    fs.writeFileSync(path.join(dir, `message_${next}`), Buffer.from([0x49, 0x4d]));
    const store = MessageStore.open({ root: dir, blockSize: 64 * 1024 });
    assert.equal(store.nextId, next * 64 * 1024 + 32);
    await store.close();
  });
});

describe('damage that is not a torn tail', () => {
  const dirs: string[] = [];
  after(() => dirs.forEach(removeDir));

  it('a corrupt record in the middle of an older block is an error naming file and offset', async () => {
    const dir = tempDir();
    dirs.push(dir);
    await buildFolder(dir, 64 * 1024);
    fs.rmSync(path.join(dir, 'peer_index')); // force a full scan
    const file = path.join(dir, 'message_0');
    const buf = fs.readFileSync(file);
    const at = 32 + buf.readInt32BE(36) + 20; // second record
    buf[at] ^= 0xff;
    fs.writeFileSync(file, buf);
    assert.throws(
      () => MessageStore.open({ root: dir, blockSize: 64 * 1024 }),
      (err: Error) =>
        err instanceof StorageOpenError &&
        err.message.includes(`message_0 offset ${at}`) &&
        /magic/.test(err.message),
    );
    assert.equal(fs.existsSync(path.join(dir, LOCK_FILE)), false, 'a failed open releases the lock');
  });

  it('an older block that does not end in a whole record is refused, naming the file', async () => {
    const dir = tempDir();
    dirs.push(dir);
    await buildFolder(dir, 64 * 1024);
    const file = path.join(dir, 'message_0');
    fs.truncateSync(file, fs.statSync(file).size - 3);
    assert.throws(
      () => MessageStore.open({ root: dir, blockSize: 64 * 1024 }),
      /message_0: does not end with a complete record/,
    );
  });

  it('a chain pointing at a damaged record gives a query error naming file and offset, not a silent skip', async () => {
    const dir = tempDir();
    dirs.push(dir);
    const store = MessageStore.open({ root: dir });
    const first = store.savePeerMessage(APP, 1n, 1n, Cmd.IM, imBody(2n, 1n, 'one'));
    store.savePeerMessage(APP, 1n, 1n, Cmd.IM, imBody(2n, 1n, 'two'));
    await store.close();
    const file = path.join(dir, 'message_0');
    const buf = fs.readFileSync(file);
    buf[first.msgId + 1] ^= 0xff; // the first message's MAGIC
    fs.writeFileSync(file, buf);
    const reopened = MessageStore.open({ root: dir });
    assert.throws(
      () => reopened.syncMessage(APP, 1n, 0),
      new RegExp(`message_0 offset ${first.msgId}: bad record magic`),
    );
    await reopened.close();
  });
});

describe('one process owns a data folder', () => {
  const dirs: string[] = [];
  after(() => dirs.forEach(removeDir));

  it('a second open of the same folder is refused, naming the holder pid', async () => {
    const dir = tempDir();
    dirs.push(dir);
    const store = MessageStore.open({ root: dir });
    assert.throws(() => MessageStore.open({ root: dir }), new RegExp(`in use by ims pid ${process.pid}`));
    await store.close();
    const again = MessageStore.open({ root: dir });
    await again.close();
  });

  it('takes over the stale lock of a dead process', async () => {
    const dir = tempDir();
    dirs.push(dir);
    fs.writeFileSync(
      path.join(dir, LOCK_FILE),
      JSON.stringify({
        pid: 2 ** 22 + 17,
        host: (await import('node:os')).hostname(),
        procStart: '1',
        since: 'then',
        role: 'ims',
      }),
    );
    const lock = new DataDirLock(dir);
    assert.match(lock.acquire() ?? '', /stale lock/);
    lock.release();
    assert.equal(fs.existsSync(path.join(dir, LOCK_FILE)), false);
  });
});
