import assert from 'node:assert/strict';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ImsRpcError } from '../../src/client/index.js';
import { Cmd } from '../../src/format/constants.js';
import { rpcErrorMessage } from '../../src/rpc/rpc-error.filter.js';
import {
  CorruptRecordError,
  StorageInputError,
  StorageWriteError,
} from '../../src/storage/storage-errors.js';
import { removeDir } from '../support/fixtures.js';
import { blockFilesSize, clientFor, freePortFor, imBody, rawServerFixture } from '../support/rpc-client.js';
import { startServer, type ServerProcess } from '../support/server-process.js';

const b64 = (b: Buffer) => b.toString('base64');
const peer = { appId: 7, uid: 1, deviceId: 1, cmd: Cmd.IM, raw: b64(imBody(2, 1, 'ok')) };
const group = { appId: 7, groupId: 9, deviceId: 1, cmd: Cmd.GROUP_IM, raw: b64(imBody(2, 9, 'ok')) };
const fanout = { appId: 7, members: [1, 2], deviceId: 1, cmd: Cmd.GROUP_IM, raw: b64(imBody(2, 9, 'ok')) };
const sync = { appId: 7, uid: 1, deviceId: 1, lastMsgId: 0 };
const groupSync = { appId: 7, uid: 1, deviceId: 1, groupId: 9, lastMsgId: 0, timestamp: 0 };
const latest = { appId: 7, uid: 1, limit: 10 };

function without<T extends object>(o: T, key: keyof T): Partial<T> {
  const copy = { ...o };
  delete copy[key];
  return copy;
}

/** [pattern, payload, what the error must say] */
const BAD: [string, unknown, RegExp][] = [
  ['SavePeerMessage', without(peer, 'appId'), /appId must be a non-negative integer/],
  ['SavePeerMessage', { ...peer, appId: -1 }, /appId must be a non-negative integer/],
  ['SavePeerMessage', { ...peer, appId: 1.5 }, /appId must be a non-negative integer/],
  ['SavePeerMessage', { ...peer, appId: 'seven' }, /appId must be a non-negative integer/],
  ['SavePeerMessage', { ...peer, appId: true }, /appId must be a non-negative integer/],
  ['SavePeerMessage', { ...peer, uid: '9223372036854775808' }, /uid must fit in a signed 64-bit integer/],
  ['SavePeerMessage', { ...peer, uid: 2 ** 53 }, /uid must be a safe integer/],
  ['SavePeerMessage', { ...peer, uid: ' 12' }, /uid must be a non-negative integer/],
  ['SavePeerMessage', { ...peer, deviceId: null }, /deviceId must be a non-negative integer/],
  ['SavePeerMessage', { ...peer, deviceId: '-5' }, /deviceId must be a non-negative integer/],
  ['SavePeerMessage', { ...peer, cmd: Cmd.ACK }, /cmd must be one of 4, 7, 8, 21, 24, 25, 36/],
  ['SavePeerMessage', { ...peer, cmd: '4' }, /cmd must be one of/],
  ['SavePeerMessage', without(peer, 'cmd'), /cmd must be one of/],
  ['SavePeerMessage', without(peer, 'raw'), /raw must be a base64 string/],
  ['SavePeerMessage', { ...peer, raw: 'not base64!' }, /raw is not valid base64/],
  ['SavePeerMessage', { ...peer, raw: 12345 }, /raw must be a base64 string/],
  [
    'SavePeerMessage',
    { ...peer, raw: b64(Buffer.alloc(10)) },
    /raw: body of 10 bytes is too short for cmd 4/,
  ],
  [
    'SavePeerMessage',
    { ...peer, cmd: Cmd.SYSTEM, raw: b64(Buffer.alloc(32768, 0x61)) },
    /raw: body is 32768 bytes; the limit is 32767/,
  ],
  [
    'SavePeerMessage',
    { ...peer, cmd: Cmd.CUSTOMER, raw: b64(Buffer.alloc(20)) },
    /raw: body of 20 bytes is too short for cmd 24/,
  ],
  ['SavePeerMessage', 42, /payload must be a JSON object/],
  ['SavePeerMessage', 'appId=7', /payload must be a JSON object/],
  ['SavePeerMessage', [peer], /payload must be a JSON object/],
  ['SaveGroupMessage', { ...group, cmd: Cmd.IM }, /cmd must be one of 7, 8/],
  ['SaveGroupMessage', without(group, 'groupId'), /groupId must be a non-negative integer/],
  ['SaveGroupMessage', { ...group, raw: b64(Buffer.alloc(32 * 1024 + 5)) }, /raw: body is 32773 bytes/],
  ['SavePeerGroupMessage', { ...fanout, members: [] }, /members must not be empty/],
  ['SavePeerGroupMessage', { ...fanout, members: 5 }, /members must be an array of ids/],
  ['SavePeerGroupMessage', { ...fanout, members: [1, -2] }, /members\[1\] must be a non-negative integer/],
  [
    'SavePeerGroupMessage',
    { ...fanout, members: Array.from({ length: 10001 }, (_, i) => i) },
    /members has 10001 items; the limit is 10000/,
  ],
  ['SavePeerGroupMessage', { ...fanout, cmd: 250 }, /cmd must be one of/],
  ['SyncMessage', { ...sync, lastMsgId: -1 }, /lastMsgId must be a non-negative integer/],
  ['SyncMessage', without(sync, 'uid'), /uid must be a non-negative integer/],
  ['SyncGroupMessage', { ...groupSync, timestamp: 2 ** 31 }, /timestamp must fit in int32/],
  ['SyncGroupMessage', { ...groupSync, timestamp: 'yesterday' }, /timestamp must be an integer/],
  ['SyncGroupMessage', without(groupSync, 'groupId'), /groupId must be a non-negative integer/],
  ['GetNewCount', { ...sync, lastMsgId: 'x' }, /lastMsgId must be a non-negative integer/],
  ['GetLatestMessage', { ...latest, limit: 0 }, /limit must be at least 1/],
  ['GetLatestMessage', { ...latest, limit: 2.5 }, /limit must be an integer/],
  ['GetLatestMessage', without(latest, 'limit'), /limit must be an integer/],
];

describe('RPC input validation', () => {
  const fx = rawServerFixture();

  it(`answers ${BAD.length} bad payloads with errors naming the field, writes nothing, keeps the connection`, async () => {
    const { server, rpc } = fx;
    assert.ok(BAD.length >= 25);
    // One good save first so the folder and its block file exist.
    const first = await rpc.call('SavePeerMessage', peer);
    assert.ok(first.ok, JSON.stringify(first));
    const port = rpc.localPort();
    const sizeBefore = blockFilesSize(server.dataDir);

    for (const [pattern, payload, expected] of BAD) {
      const res = await rpc.call(pattern, payload);
      const label = `${pattern} ${JSON.stringify(payload)?.slice(0, 120)}`;
      assert.equal(res.ok, false, `accepted: ${label}`);
      if (!res.ok) {
        assert.match(res.message, expected, label);
        assert.ok(res.message.startsWith(`${pattern}: `), `not prefixed with the pattern: ${res.message}`);
      }
    }

    assert.equal(rpc.localPort(), port, 'the connection was replaced');
    assert.equal(blockFilesSize(server.dataDir), sizeBefore, 'a refused request wrote to the log');
    // The next good request on the same connection succeeds, and its id is where the log ended before.
    const good = await rpc.call('SavePeerMessage', peer);
    assert.ok(good.ok, JSON.stringify(good));
    assert.deepEqual(good.value, {
      msgId: sizeBefore,
      prevMsgId: (first as { value: { msgId: number } }).value.msgId,
    });
    const synced = await rpc.call('SyncMessage', sync);
    assert.ok(synced.ok);
    assert.equal((synced.value as { messages: unknown[] }).messages.length, 2);
    assert.equal(rpc.localPort(), port);
    assert.equal(server.exited, false);
  });

  it('accepts ids as decimal strings and numbers alike, and ignores unknown fields', async () => {
    const { rpc } = fx;
    const res = await rpc.call('SyncMessage', {
      appId: '7',
      uid: '1',
      deviceId: 0,
      lastMsgId: '0',
      extra: 'x',
    });
    assert.ok(res.ok, JSON.stringify(res));
    assert.equal((res.value as { messages: unknown[] }).messages.length, 2);
  });

  it('answers an unknown pattern with an error and keeps serving', async () => {
    const { rpc } = fx;
    const res = await rpc.call('DeleteEverything', {});
    assert.equal(res.ok, false);
    assert.ok((await rpc.call('Ping', {})).ok);
  });

  it('maps storage errors to messages naming the problem', () => {
    assert.equal(
      rpcErrorMessage(new StorageInputError('limit must be at least 1, got 0')),
      'limit must be at least 1, got 0',
    );
    assert.equal(
      rpcErrorMessage(new CorruptRecordError('message_3', 4096, 'bad magic')),
      'storage: message_3 offset 4096: bad magic',
    );
    assert.equal(rpcErrorMessage(new StorageWriteError('ENOSPC')), 'storage write failed: ENOSPC');
  });
});

describe('a slave (master_address set)', () => {
  let server: ServerProcess;

  before(async () => {
    // Nothing listens at the master address: the slave keeps retrying, and RPC must still behave.
    server = await startServer({
      masterAddress: `127.0.0.1:${await freePortFor()}`,
      config: { block_size: 1048576 },
    });
  });
  after(async () => {
    await server?.stop();
    if (server) removeDir(path.dirname(server.dataDir));
  });

  it('refuses every write with "read-only replica" and still answers reads', async () => {
    const client = clientFor(server);
    try {
      const size = blockFilesSize(server.dataDir);
      const writes = [
        () => client.savePeerMessage({ appId: 7, uid: 1, deviceId: 1, cmd: Cmd.IM, raw: imBody(2, 1, 'x') }),
        () =>
          client.saveGroupMessage({
            appId: 7,
            groupId: 9,
            deviceId: 1,
            cmd: Cmd.GROUP_IM,
            raw: imBody(2, 9, 'x'),
          }),
        () =>
          client.savePeerGroupMessage({
            appId: 7,
            members: [1, 2],
            deviceId: 1,
            cmd: Cmd.GROUP_IM,
            raw: imBody(2, 9, 'x'),
          }),
      ];
      for (const write of writes) {
        await assert.rejects(write(), (err: Error) => {
          assert.ok(err instanceof ImsRpcError);
          assert.match(err.message, /^Save\w+: read-only replica/);
          return true;
        });
      }
      // Batched saves too: concurrent calls go out as one SavePeerMessages, refused whole.
      const batch = await Promise.allSettled(
        [1, 2, 3].map((uid) =>
          client.savePeerMessage({ appId: 7, uid, deviceId: 1, cmd: Cmd.IM, raw: imBody(2, uid, 'x') }),
        ),
      );
      for (const r of batch) {
        assert.equal(r.status, 'rejected');
        assert.match(
          String((r as PromiseRejectedResult).reason.message),
          /^SavePeerMessage: read-only replica/,
        );
      }
      assert.deepEqual(await client.syncMessage({ appId: 7, uid: 1, deviceId: 1, lastMsgId: 0 }), {
        messages: [],
        lastMsgId: 0,
        hasMore: false,
      });
      assert.deepEqual(await client.getNewCount({ appId: 7, uid: 1, deviceId: 1, lastMsgId: 0 }), {
        count: 0,
      });
      assert.deepEqual(await client.ping(), { pong: true });
      assert.equal(blockFilesSize(server.dataDir), size);
    } finally {
      await client.close();
    }
  });
});
