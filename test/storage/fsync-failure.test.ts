import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import { ImsRpcError } from '../../src/client/index.js';
import { Cmd } from '../../src/format/constants.js';
import { removeDir, tempDir } from '../support/fixtures.js';
import { clientFor, imBody } from '../support/rpc-client.js';
import { startServer } from '../support/server-process.js';

const FAULT_PRELOAD = fileURLToPath(new URL('../support/fsync-fault.js', import.meta.url));
const APP = 31;

async function ready(httpBase: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`${httpBase}/health/ready`);
  return { status: res.status, body: await res.text() };
}

describe('a failed fdatasync (durability=sync)', () => {
  const work = tempDir('ims-fsync-fault-');
  const dataDir = path.join(work, 'data');
  const flag = path.join(work, 'fail-fsync');
  after(() => removeDir(work));

  it('fails the saves it covers, refuses every later write, fails readiness, exits 1; acked saves survive', async () => {
    const server = await startServer({
      dataDir,
      config: { block_size: 1048576 },
      nodeFlags: ['--import', FAULT_PRELOAD],
      env: { IMS_TEST_FSYNC_FAULT: flag },
    });
    const client = clientFor(server);
    const save = (uid: number, text: string) =>
      client.savePeerMessage({ appId: APP, uid, deviceId: 1, cmd: Cmd.IM, raw: imBody(2, uid, text) });
    try {
      const acked = await save(1, 'before the fault');
      assert.equal((await ready(server.httpBase)).status, 200);

      fs.writeFileSync(flag, '');
      // Three concurrent calls: the client sends them as one SavePeerMessages, and each is told.
      const covered = await Promise.allSettled([1, 2, 3].map((uid) => save(uid, 'covered by the fault')));
      for (const r of covered) {
        assert.equal(r.status, 'rejected');
        const err = (r as PromiseRejectedResult).reason as Error;
        assert.ok(err instanceof ImsRpcError, String(err));
        assert.match(err.message, /^SavePeerMessage: storage write failed: fdatasync of message_0 failed/);
      }
      // No retry after a failed fsync (the kernel may have dropped the dirty pages): the store fails closed,
      // even once the disk would work again.
      fs.rmSync(flag);
      await assert.rejects(save(2, 'after the fault'), /refuses writes after a failed fsync/);
      const r = await ready(server.httpBase);
      assert.equal(r.status, 503);
      assert.match(r.body, /fdatasync of message_0 failed/);
      // Reads still work.
      const synced = await client.syncMessage({ appId: APP, uid: 1, deviceId: 9, lastMsgId: 0 });
      assert.ok(synced.messages.some((m) => m.msgId === acked.msgId));
    } finally {
      await client.close();
    }
    const exit = await server.stop('SIGTERM');
    assert.deepEqual(exit, { code: 1, signal: null });
    assert.match(server.logText(), /shut down after a failed fsync/);

    // A restart without the fault recovers from the log: the acknowledged save is there and writes work.
    const again = await startServer({ dataDir, config: { block_size: 1048576 } });
    const c2 = clientFor(again);
    try {
      const s = await c2.syncMessage({ appId: APP, uid: 1, deviceId: 9, lastMsgId: 0 });
      assert.ok(s.messages.some((m) => Buffer.from(m.raw).subarray(24).toString() === 'before the fault'));
      const next = await c2.savePeerMessage({
        appId: APP,
        uid: 2,
        deviceId: 1,
        cmd: Cmd.IM,
        raw: imBody(2, 2, 'after restart'),
      });
      assert.ok(next.msgId > 0);
      assert.equal((await ready(again.httpBase)).status, 200);
    } finally {
      await c2.close();
      await again.stop();
      removeDir(path.dirname(server.configPath));
      removeDir(path.dirname(again.configPath));
    }
  });
});
