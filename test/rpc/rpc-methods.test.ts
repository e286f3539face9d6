import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ImsRpcError, type ImsClient } from '../../src/client/index.js';
import { Cmd } from '../../src/format/constants.js';
import { removeDir } from '../support/fixtures.js';
import { clientFor, imBody } from '../support/rpc-client.js';
import { startServer, type ServerProcess } from '../support/server-process.js';
import * as path from 'node:path';

const APP = 7;

describe('RPC methods against the real server (default limits)', () => {
  let server: ServerProcess;
  let client: ImsClient;

  before(async () => {
    server = await startServer({ config: { block_size: 1048576 } });
    client = clientFor(server);
    await client.connect();
  });
  after(async () => {
    await client?.close();
    await server?.stop();
    if (server) removeDir(path.dirname(server.dataDir));
  });

  it('Ping answers pong', async () => {
    assert.deepEqual(await client.ping(), { pong: true });
  });

  it('SavePeerMessage chains a user queue (prevMsgId) and SyncMessage returns it newest first', async () => {
    const first = await client.savePeerMessage({
      appId: APP,
      uid: 1001,
      deviceId: 55,
      cmd: Cmd.IM,
      raw: imBody(2002, 1001, 'hello'),
    });
    assert.equal(first.prevMsgId, 0);
    const second = await client.savePeerMessage({
      appId: APP,
      uid: 1001,
      deviceId: 56,
      cmd: Cmd.IM,
      raw: imBody(2002, 1001, 'again'),
    });
    assert.ok(second.msgId > first.msgId);
    assert.equal(second.prevMsgId, first.msgId);

    const sync = await client.syncMessage({ appId: APP, uid: 1001, deviceId: 1, lastMsgId: 0 });
    assert.deepEqual(
      sync.messages.map((m) => [m.msgId, m.deviceId, m.cmd, m.raw.subarray(24).toString()]),
      [
        [second.msgId, 56n, Cmd.IM, 'again'],
        [first.msgId, 55n, Cmd.IM, 'hello'],
      ],
    );
    assert.equal(sync.lastMsgId, second.msgId);
    assert.equal(sync.hasMore, false);
    const later = await client.syncMessage({ appId: APP, uid: 1001, deviceId: 1, lastMsgId: first.msgId });
    assert.deepEqual(
      later.messages.map((m) => m.msgId),
      [second.msgId],
    );
    // Another app with the same uid is another queue.
    const other = await client.syncMessage({ appId: APP + 1, uid: 1001, deviceId: 1, lastMsgId: 0 });
    assert.deepEqual(other, { messages: [], lastMsgId: 0, hasMore: false });
  });

  it('carries 64-bit ids beyond 2^53 exactly (decimal strings on the wire)', async () => {
    const appId = 2n ** 62n + 3n;
    const uid = '9007199254740993'; // 2^53 + 1: not a safe number
    const deviceId = 2n ** 63n - 1n;
    const saved = await client.savePeerMessage({
      appId,
      uid,
      deviceId,
      cmd: Cmd.SYSTEM,
      raw: Buffer.from('sys'),
    });
    const sync = await client.syncMessage({ appId, uid: BigInt(uid), deviceId: 0, lastMsgId: 0 });
    assert.equal(sync.messages.length, 1);
    assert.equal(sync.messages[0].msgId, saved.msgId);
    assert.equal(sync.messages[0].deviceId, deviceId);
    assert.equal(sync.messages[0].raw.toString(), 'sys');
    // The same numbers as safe-number input are a different (smaller) user: nothing there.
    const near = await client.syncMessage({ appId, uid: 9007199254740991, deviceId: 0, lastMsgId: 0 });
    assert.equal(near.messages.length, 0);
  });

  it('SaveGroupMessage and SyncGroupMessage: group chain, join-time filter, lastMsgId', async () => {
    const gid = 2n ** 40n + 9n;
    const ids: number[] = [];
    let prev = 0;
    for (const ts of [100, 200, 300]) {
      const r = await client.saveGroupMessage({
        appId: APP,
        groupId: gid,
        deviceId: ts,
        cmd: Cmd.GROUP_IM,
        raw: imBody(3003, gid, `at ${ts}`, ts),
      });
      assert.equal(r.prevMsgId, prev);
      prev = r.msgId;
      ids.push(r.msgId);
    }
    const all = await client.syncGroupMessage({
      appId: APP,
      uid: 3003,
      deviceId: 1,
      groupId: gid,
      lastMsgId: 0,
      timestamp: 0,
    });
    assert.deepEqual(
      all.messages.map((m) => m.msgId),
      [...ids].reverse(),
    );
    assert.equal(all.lastMsgId, ids[2]);
    // Joined at 200: the message of 100 predates the member.
    const joined = await client.syncGroupMessage({
      appId: APP,
      uid: 3004,
      deviceId: 1,
      groupId: gid,
      lastMsgId: 0,
      timestamp: 200,
    });
    assert.deepEqual(
      joined.messages.map((m) => [m.msgId, m.deviceId, m.raw.subarray(24).toString()]),
      [
        [ids[2], 300n, 'at 300'],
        [ids[1], 200n, 'at 200'],
      ],
    );
    // With a sync point the join time does not apply.
    const since = await client.syncGroupMessage({
      appId: APP,
      uid: 3004,
      deviceId: 1,
      groupId: gid,
      lastMsgId: ids[0],
      timestamp: 1000,
    });
    assert.deepEqual(
      since.messages.map((m) => m.msgId),
      [ids[2], ids[1]],
    );
    assert.equal(since.hasMore, false);
  });

  it('SavePeerGroupMessage stores one message and enters it into every member queue', async () => {
    const before = await client.savePeerMessage({
      appId: APP,
      uid: 4002,
      deviceId: 0,
      cmd: Cmd.SYSTEM,
      raw: Buffer.from('earlier'),
    });
    const res = await client.savePeerGroupMessage({
      appId: APP,
      members: [4001, 4002, '4003'],
      deviceId: 77,
      cmd: Cmd.GROUP_IM,
      raw: imBody(4001, 555, 'to the group'),
    });
    assert.equal(res.messageIds.length, 3);
    const msgId = res.messageIds[0].msgId;
    assert.ok(res.messageIds.every((m) => m.msgId === msgId));
    assert.deepEqual(
      res.messageIds.map((m) => m.prevMsgId),
      [0, before.msgId, 0],
    );
    for (const uid of [4001, 4002, 4003]) {
      const s = await client.syncMessage({ appId: APP, uid, deviceId: 0, lastMsgId: 0 });
      assert.equal(s.messages[0].msgId, msgId, `member ${uid}`);
      assert.equal(s.messages[0].cmd, Cmd.GROUP_IM);
      assert.equal(s.messages[0].deviceId, 77n);
    }
  });

  it('GetNewCount ignores messages the user sent', async () => {
    const [alice, bob] = [5001, 5002];
    // Alice -> Bob, stored for the receiver and for the sender's other devices.
    const toBob = await client.savePeerMessage({
      appId: APP,
      uid: bob,
      deviceId: 1,
      cmd: Cmd.IM,
      raw: imBody(alice, bob, 'hi bob'),
    });
    const aliceCopy = await client.savePeerMessage({
      appId: APP,
      uid: alice,
      deviceId: 1,
      cmd: Cmd.IM,
      raw: imBody(alice, bob, 'hi bob'),
    });
    assert.deepEqual(await client.getNewCount({ appId: APP, uid: bob, deviceId: 2, lastMsgId: 0 }), {
      count: 1,
    });
    assert.deepEqual(await client.getNewCount({ appId: APP, uid: alice, deviceId: 2, lastMsgId: 0 }), {
      count: 0,
    });
    assert.deepEqual(
      await client.getNewCount({ appId: APP, uid: bob, deviceId: 2, lastMsgId: toBob.msgId }),
      {
        count: 0,
      },
    );
    // Bob answers: now Alice has something new after her own copy.
    await client.savePeerMessage({
      appId: APP,
      uid: alice,
      deviceId: 3,
      cmd: Cmd.IM,
      raw: imBody(bob, alice, 'hi alice'),
    });
    assert.deepEqual(
      await client.getNewCount({ appId: APP, uid: alice, deviceId: 2, lastMsgId: aliceCopy.msgId }),
      { count: 1 },
    );
  });

  it('GetLatestMessage returns the newest `limit` messages newest first, without MSG_SYSTEM', async () => {
    const uid = 6001;
    const a = await client.savePeerMessage({
      appId: APP,
      uid,
      deviceId: 1,
      cmd: Cmd.IM,
      raw: imBody(1, uid, 'a'),
    });
    const b = await client.savePeerMessage({
      appId: APP,
      uid,
      deviceId: 1,
      cmd: Cmd.GROUP_NOTIFICATION,
      raw: Buffer.from('{"n":1}'),
    });
    await client.savePeerMessage({
      appId: APP,
      uid,
      deviceId: 0,
      cmd: Cmd.SYSTEM,
      raw: Buffer.from('system'),
    });
    const c = await client.savePeerMessage({
      appId: APP,
      uid,
      deviceId: 1,
      cmd: Cmd.IM,
      raw: imBody(1, uid, 'c'),
    });
    const two = await client.getLatestMessage({ appId: APP, uid, limit: 2 });
    assert.deepEqual(
      two.messages.map((m) => m.msgId),
      [c.msgId, b.msgId],
    );
    const all = await client.getLatestMessage({ appId: APP, uid, limit: 100 });
    assert.deepEqual(
      all.messages.map((m) => m.msgId),
      [c.msgId, b.msgId, a.msgId],
    );
    assert.deepEqual(await client.getLatestMessage({ appId: APP, uid: 6999, limit: 5 }), { messages: [] });
    await assert.rejects(client.getLatestMessage({ appId: APP, uid, limit: 0 }), (err: Error) => {
      assert.ok(err instanceof ImsRpcError);
      assert.match(err.message, /^GetLatestMessage: limit must be at least 1/);
      return true;
    });
  });
});

describe('RPC counters in /summary', () => {
  it('count requests (refused ones too), user-queue entries and super-group saves', async () => {
    const server = await startServer({ config: { block_size: 1048576 } });
    const client = clientFor(server);
    try {
      await client.savePeerMessage({
        appId: APP,
        uid: 1,
        deviceId: 0,
        cmd: Cmd.SYSTEM,
        raw: Buffer.from('a'),
      });
      await client.savePeerGroupMessage({
        appId: APP,
        members: [1, 2, 3],
        deviceId: 0,
        cmd: Cmd.SYSTEM,
        raw: Buffer.from('b'),
      });
      await client.saveGroupMessage({
        appId: APP,
        groupId: 5,
        deviceId: 0,
        cmd: Cmd.GROUP_NOTIFICATION,
        raw: Buffer.from('c'),
      });
      await client.syncMessage({ appId: APP, uid: 1, deviceId: 0, lastMsgId: 0 });
      await assert.rejects(client.getLatestMessage({ appId: APP, uid: 1, limit: 0 }), ImsRpcError);
      const summary = (await (await fetch(`${server.httpBase}/summary`)).json()) as Record<string, number>;
      assert.equal(summary.request_count, 5);
      assert.equal(summary.peer_message_count, 4);
      assert.equal(summary.group_message_count, 1);
    } finally {
      await client.close();
      await server.stop();
      removeDir(path.dirname(server.dataDir));
    }
  });
});

describe('RPC sync limits from the config (limit=5, group_limit=2)', () => {
  let server: ServerProcess;
  let client: ImsClient;

  before(async () => {
    server = await startServer({ config: { block_size: 1048576, limit: 5, group_limit: 2 } });
    client = clientFor(server);
  });
  after(async () => {
    await client?.close();
    await server?.stop();
    if (server) removeDir(path.dirname(server.dataDir));
  });

  it('SyncMessage stops at `limit` and says hasMore', async () => {
    const uid = 7001;
    const ids: number[] = [];
    for (let i = 0; i < 8; i++) {
      const r = await client.savePeerMessage({
        appId: APP,
        uid,
        deviceId: i,
        cmd: Cmd.IM,
        raw: imBody(9, uid, `m${i}`),
      });
      ids.push(r.msgId);
    }
    const first = await client.syncMessage({ appId: APP, uid, deviceId: 0, lastMsgId: 0 });
    assert.deepEqual(
      first.messages.map((m) => m.msgId),
      ids.slice(3).reverse(),
    );
    assert.equal(first.hasMore, true);
    assert.equal(first.lastMsgId, ids[7]);
    // Exactly five newer than ids[2]: all of them, and nothing more to say.
    const rest = await client.syncMessage({ appId: APP, uid, deviceId: 0, lastMsgId: ids[2] });
    assert.deepEqual(
      rest.messages.map((m) => m.msgId),
      ids.slice(3).reverse(),
    );
    assert.equal(rest.hasMore, false);
  });

  it('after group_limit messages SyncMessage follows only the one-to-one chain', async () => {
    const uid = 7002;
    const save = async (cmd: number, text: string) =>
      (await client.savePeerMessage({ appId: APP, uid, deviceId: 0, cmd, raw: imBody(9, uid, text) })).msgId;
    const p1 = await save(Cmd.IM, 'p1');
    await save(Cmd.GROUP_IM, 'g1');
    const p2 = await save(Cmd.IM, 'p2');
    await save(Cmd.GROUP_IM, 'g2');
    const g3 = await save(Cmd.GROUP_IM, 'g3');
    const p3 = await save(Cmd.IM, 'p3');
    const sync = await client.syncMessage({ appId: APP, uid, deviceId: 0, lastMsgId: 0 });
    assert.deepEqual(
      sync.messages.map((m) => m.raw.subarray(24).toString()),
      ['p3', 'g3', 'p2', 'p1'],
    );
    assert.deepEqual(
      sync.messages.map((m) => m.msgId),
      [p3, g3, p2, p1],
    );
  });
});
