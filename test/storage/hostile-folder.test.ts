/**
 * A hostile (or damaged) folder: a record whose length field claims 2 GiB, and an index entry that
 * points past the log. Each is an error naming the file and where in it, never an allocation of the
 * claimed size (issue 23, "what ims reads").
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { verifyFolder } from '../../src/cli/verify.js';
import { Cmd } from '../../src/format/constants.js';
import { MessageStore } from '../../src/storage/index.js';
import { removeDir, tempDir } from '../support/fixtures.js';
import { APP, imBody } from '../support/workload.js';

describe('reading a hostile folder', () => {
  const dirs: string[] = [];
  after(() => dirs.forEach(removeDir));
  const folder = () => {
    const d = tempDir('ims-hostile-');
    dirs.push(d);
    return d;
  };

  it('a record claiming a 2 GiB body: an error naming file and offset on read and in verify, no 2 GiB buffer', async () => {
    const dir = folder();
    const store = MessageStore.open({ root: dir });
    const saved = store.savePeerMessage(APP, 4n, 1n, Cmd.IM, imBody(1n, 4n, 'victim'));
    store.savePeerMessage(APP, 5n, 1n, Cmd.IM, imBody(1n, 5n, 'after it'));
    await store.close();
    const file = path.join(dir, 'message_0');
    const buf = fs.readFileSync(file);
    buf.writeInt32BE(0x7fffffff, saved.msgId + 4); // the record's body length
    fs.writeFileSync(file, buf);
    const rssBefore = process.memoryUsage().rss;

    const reopened = MessageStore.open({ root: dir });
    try {
      assert.throws(
        () => reopened.syncMessage(APP, 4n, 0),
        new RegExp(`message_0 offset ${saved.msgId}: bad body length 2147483647`),
      );
    } finally {
      await reopened.close();
    }
    const report = verifyFolder(dir, { blockSize: 128 * 1024 * 1024, blockSizeSource: 'test' });
    assert.equal(report.clean, false);
    assert.ok(
      report.problems.some((p) =>
        new RegExp(`message_0 offset ${saved.msgId}\\b.*2147483647`).test(JSON.stringify(p)),
      ),
      JSON.stringify(report.problems),
    );
    assert.ok(
      process.memoryUsage().rss - rssBefore < 256 * 2 ** 20,
      'nothing of the claimed size was allocated',
    );
  });

  it('an index entry pointing past the log: named (file, entry) and the index rebuilt from the blocks', async () => {
    const dir = folder();
    const store = MessageStore.open({ root: dir });
    const saved = store.savePeerMessage(APP, 4n, 1n, Cmd.IM, imBody(1n, 4n, 'kept'));
    await store.close();
    const index = path.join(dir, 'peer_index');
    const data = fs.readFileSync(index);
    // Entry 0's first id slot (after the 16-byte key): far past the log.
    data.writeUInt32BE(0x7fff, 16);
    fs.writeFileSync(index, data);
    const reopened = MessageStore.open({ root: dir });
    try {
      assert.equal(reopened.openReport?.index, 'rebuilt');
      assert.match(
        reopened.openReport?.reason ?? '',
        /^peer_index: entry 0 holds id \d+, past the end of the log \(\d+\)$/,
      );
      assert.deepEqual(
        reopened.syncMessage(APP, 4n, 0).messages.map((m) => m.msgId),
        [saved.msgId],
      );
    } finally {
      await reopened.close();
    }
  });
});
