import assert from 'node:assert/strict';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ImsClient } from '../../src/client/index.js';
import { Cmd } from '../../src/format/constants.js';
import { removeDir } from '../support/fixtures.js';
import { clientFor, imBody } from '../support/rpc-client.js';
import { startServer, type ServerProcess } from '../support/server-process.js';

const APP = 3;

describe('RPC under concurrency', () => {
  let server: ServerProcess;

  before(async () => {
    server = await startServer({ config: { block_size: 1048576 } });
  });
  after(async () => {
    await server?.stop();
    if (server) removeDir(path.dirname(server.dataDir));
  });

  it('1,000 concurrent saves from 20 clients get distinct ids and are all found by sync', async () => {
    const CLIENTS = 20;
    const PER_CLIENT = 50;
    const USERS = 40;
    const clients: ImsClient[] = Array.from({ length: CLIENTS }, () => clientFor(server, 30000));
    try {
      await Promise.all(clients.map((c) => c.connect()));
      const saves = clients.flatMap((c, ci) =>
        Array.from({ length: PER_CLIENT }, (_, k) => {
          const uid = (ci * PER_CLIENT + k) % USERS;
          const text = `c${ci}-m${k}`;
          return c
            .savePeerMessage({ appId: APP, uid, deviceId: ci, cmd: Cmd.IM, raw: imBody(999, uid, text) })
            .then((r) => ({ uid, text, ci, ...r }));
        }),
      );
      const results = await Promise.all(saves);
      assert.equal(results.length, CLIENTS * PER_CLIENT);
      assert.equal(new Set(results.map((r) => r.msgId)).size, results.length, 'duplicate message ids');

      // Every message is in its user's queue, with its own body and device, and each user's prevMsgId
      // values form one chain (no save lost its place).
      for (let uid = 0; uid < USERS; uid++) {
        const mine = results.filter((r) => r.uid === uid);
        const sync = await clients[uid % CLIENTS].syncMessage({ appId: APP, uid, deviceId: 0, lastMsgId: 0 });
        assert.equal(sync.messages.length, mine.length, `user ${uid}`);
        const byId = new Map(sync.messages.map((m) => [m.msgId, m]));
        for (const r of mine) {
          const m = byId.get(r.msgId);
          assert.ok(m, `user ${uid} lacks ${r.msgId}`);
          assert.equal(m.raw.subarray(24).toString(), r.text);
          assert.equal(m.deviceId, BigInt(r.ci));
        }
        const ordered = [...mine].sort((a, b) => a.msgId - b.msgId);
        ordered.forEach((r, i) =>
          assert.equal(r.prevMsgId, i === 0 ? 0 : ordered[i - 1].msgId, `user ${uid} chain`),
        );
        assert.deepEqual(
          sync.messages.map((m) => m.msgId),
          ordered.map((r) => r.msgId).reverse(),
        );
      }
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  });

  it('200 requests in flight on one connection each get their own answer', async () => {
    const client = clientFor(server, 30000);
    try {
      await client.connect();
      const base = 10_000;
      // Mixed kinds at once: saves to distinct users, then reads of each user, all pipelined.
      const saves = await Promise.all(
        Array.from({ length: 100 }, (_, i) =>
          client
            .savePeerMessage({
              appId: APP,
              uid: base + i,
              deviceId: i,
              cmd: Cmd.SYSTEM,
              raw: Buffer.from(`n${i}`),
            })
            .then((r) => ({ i, ...r })),
        ),
      );
      assert.equal(new Set(saves.map((s) => s.msgId)).size, 100);
      const inFlight: Promise<void>[] = [];
      for (let i = 0; i < 100; i++) {
        inFlight.push(
          client.syncMessage({ appId: APP, uid: base + i, deviceId: 0, lastMsgId: 0 }).then((s) => {
            assert.equal(s.messages.length, 1, `sync ${i}`);
            assert.equal(s.messages[0].raw.toString(), `n${i}`);
            assert.equal(s.messages[0].msgId, saves[i].msgId);
            assert.equal(s.messages[0].deviceId, BigInt(i));
          }),
        );
        inFlight.push(
          client.getLatestMessage({ appId: APP, uid: base + i, limit: 1 }).then((l) => {
            // MSG_SYSTEM is not among the latest kinds: an empty answer for every user.
            assert.deepEqual(l.messages, [], `latest ${i}`);
          }),
        );
      }
      assert.equal(inFlight.length, 200);
      await Promise.all(inFlight);
      // And 200 saves in flight at once on one connection, each answer for its own user.
      const burst = await Promise.all(
        Array.from({ length: 200 }, (_, i) =>
          client.savePeerMessage({
            appId: APP,
            uid: base + (i % 100),
            deviceId: 0,
            cmd: Cmd.SYSTEM,
            raw: Buffer.from(`b${i}`),
          }),
        ),
      );
      assert.equal(new Set(burst.map((b) => b.msgId)).size, 200);
      for (let u = 0; u < 100; u++) {
        const s = await client.syncMessage({ appId: APP, uid: base + u, deviceId: 0, lastMsgId: 0 });
        assert.deepEqual(
          s.messages.map((m) => m.raw.toString()).sort(),
          [`b${u}`, `b${u + 100}`, `n${u}`].sort(),
        );
        assert.deepEqual(
          s.messages.map((m) => m.msgId),
          [burst[u + 100].msgId, burst[u].msgId, saves[u].msgId],
        );
      }
    } finally {
      await client.close();
    }
  });
});
