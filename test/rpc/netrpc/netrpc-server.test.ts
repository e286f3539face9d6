import assert from 'node:assert/strict';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Cmd } from '../../../src/format/constants.js';
import { GoBasic, GobStreamEncoder, GobStruct, type GobValue } from '../../../src/rpc/gob/gob.js';
import { goStruct } from '../../../src/rpc/gob/go-structs.js';
import { NetrpcCallError, encodeCall, type NetrpcClient } from '../../../src/rpc/netrpc/netrpc-client.js';
import { NETRPC_METHODS, argType } from '../../../src/rpc/netrpc/netrpc-types.js';
import { removeDir } from '../../support/fixtures.js';
import { clientFor, imBody } from '../../support/rpc-client.js';
import { startServer, type ServerProcess } from '../../support/server-process.js';
import {
  assertConcurrentSaves,
  assertCountedInSummary,
  assertRefusalsAsNest,
  describeListenTaken,
  describeOnSlave,
  summary,
} from '../go-transport.js';
import { NETRPC, RawNetrpc, asRecorded, callPieces, decodeAll, loadWire, netrpcClient } from './support.js';

const APP = 9;
const wire = loadWire();

const fields = (v: GobValue) => (v as GobStruct).fields;

describe('net/rpc transport against the real server', () => {
  let server: ServerProcess;

  before(async () => {
    server = await startServer({ config: { netrpc_listen: '127.0.0.1:0' } });
  });
  after(async () => {
    await server?.stop();
    if (server) removeDir(path.dirname(server.dataDir));
  });

  it('reports the netrpc port it is bound to, in the log and in /summary', async () => {
    assert.ok(server.ports.netrpc > 0);
    assert.ok(server.lines().some((l) => /netrpc listening on 127\.0\.0\.1:\d+/.test(l)));
    const s = (await summary(server)) as { listening: Record<string, string | null> };
    assert.equal(s.listening.netrpc, `127.0.0.1:${server.ports.netrpc}`);
  });

  // On the empty store, before anything else is saved: the answers that do not depend on the queue
  // format (the first save's MsgID 32, Ping) are Go's bytes, definitions included.
  it("answers Go's first call (SavePeerMessage on an empty store) and its Ping with Go's bytes", async () => {
    const client = callPieces(wire.clientGob);
    const answers = callPieces(wire.serverGob);
    const raw = await RawNetrpc.open(server.ports.netrpc);
    try {
      const first = await raw.exchange(client[0]);
      assert.equal(first.toString('hex'), answers[0].toString('hex'));
      // The capture's Ping is the eighth call: Seq 7, on a connection whose types are defined.
      const ping = await raw.exchange(client[7]);
      assert.equal(ping.toString('hex'), answers[7].toString('hex'));
    } finally {
      raw.close();
    }
  });

  describe('the eight methods through the Nest handlers', () => {
    let go: NetrpcClient;
    before(async () => {
      go = await netrpcClient(server);
    });
    after(() => go?.close());

    it('SavePeerMessage/SyncMessage/GetNewCount/GetLatestMessage as Go types, also ids above 2^53', async () => {
      const big = 2n ** 60n + 7n;
      const raw = imBody(1, 2, 'héllo');
      const save = (text: string) =>
        go.call('SavePeerMessage', {
          AppID: APP,
          Uid: big,
          DeviceID: big,
          Cmd: Cmd.IM,
          Raw: imBody(1, 2, text),
        });
      const first = asRecorded('SavePeerMessage', await save('héllo')) as {
        MsgID: number;
        PrevMsgID: number;
      };
      assert.equal(first.PrevMsgID, 0);
      const second = asRecorded('SavePeerMessage', await save('again')) as {
        MsgID: number;
        PrevMsgID: number;
      };
      assert.equal(second.PrevMsgID, first.MsgID, "PrevMsgID is the user's previous newest message");
      const sync = await go.call('SyncMessage', { AppID: APP, Uid: big, DeviceID: 1, LastMsgID: 0 });
      assert.deepEqual(asRecorded('SyncMessage', sync), {
        Messages: [
          {
            MsgID: second.MsgID,
            DeviceID: Number(big),
            Cmd: Cmd.IM,
            Raw: imBody(1, 2, 'again').toString('base64'),
          },
          { MsgID: first.MsgID, DeviceID: Number(big), Cmd: Cmd.IM, Raw: raw.toString('base64') },
        ],
        LastMsgID: second.MsgID,
        HasMore: false,
      });
      // The device id is an int64 on the wire, not rounded through a double.
      const [m] = fields(sync).get('Messages') as GobValue[];
      assert.equal(fields(m).get('DeviceID'), big);
      // The same answer as the Nest transport's.
      const nest = clientFor(server);
      try {
        const viaNest = await nest.syncMessage({ appId: APP, uid: big, deviceId: 1, lastMsgId: 0 });
        assert.deepEqual(
          viaNest.messages.map((x) => x.msgId),
          [second.MsgID, first.MsgID],
        );
        assert.equal(viaNest.hasMore, false);
        const count = (await nest.getNewCount({ appId: APP, uid: big, deviceId: 0, lastMsgId: first.MsgID }))
          .count;
        assert.equal(
          await go.call('GetNewCount', { AppID: APP, Uid: big, DeviceID: 0, LastMsgID: first.MsgID }),
          BigInt(count),
        );
      } finally {
        await nest.close();
      }
      assert.equal(
        await go.call('GetNewCount', { AppID: APP, Uid: big, DeviceID: 0, LastMsgID: second.MsgID }),
        0n,
      );
      const latest = await go.call('GetLatestMessage', { AppID: APP, Uid: big, Limit: 1 });
      assert.deepEqual(asRecorded('GetLatestMessage', latest), {
        Messages: (asRecorded('SyncMessage', sync) as { Messages: unknown[] }).Messages.slice(0, 1),
      });
    });

    it('SaveGroupMessage/SyncGroupMessage', async () => {
      const raw = imBody(1, 77, 'group');
      const save = () =>
        go.call('SaveGroupMessage', { AppID: APP, GroupID: 77, DeviceID: 3, Cmd: Cmd.GROUP_IM, Raw: raw });
      const first = asRecorded('SaveGroupMessage', await save()) as { MsgID: number; PrevMsgID: number };
      const second = asRecorded('SaveGroupMessage', await save()) as { MsgID: number; PrevMsgID: number };
      assert.equal(second.PrevMsgID, first.MsgID);
      const sync = await go.call('SyncGroupMessage', {
        AppID: APP,
        Uid: 1,
        DeviceID: 1,
        GroupID: 77,
        LastMsgID: first.MsgID,
        Timestamp: 0,
      });
      assert.equal((sync as GobStruct).typeName, 'GroupHistoryMessage');
      assert.deepEqual(asRecorded('SyncGroupMessage', sync), {
        Messages: [{ MsgID: second.MsgID, DeviceID: 3, Cmd: Cmd.GROUP_IM, Raw: raw.toString('base64') }],
        LastMsgID: second.MsgID,
        HasMore: false,
      });
    });

    it('SavePeerGroupMessage answers one {MsgID, PrevMsgID} per member, in Members order', async () => {
      const raw = imBody(1, 88, 'fan-out');
      const r = asRecorded(
        'SavePeerGroupMessage',
        await go.call('SavePeerGroupMessage', {
          AppID: APP,
          Members: [501n, 502n],
          DeviceID: 1,
          Cmd: Cmd.GROUP_IM,
          Raw: raw,
        }),
      ) as { MessageIDs: { MsgID: number; PrevMsgID: number }[] };
      assert.equal(r.MessageIDs.length, 2);
      assert.deepEqual(
        r.MessageIDs.map((x) => x.PrevMsgID),
        [0, 0],
      );
      const again = asRecorded(
        'SavePeerGroupMessage',
        await go.call('SavePeerGroupMessage', {
          AppID: APP,
          Members: [502n],
          DeviceID: 1,
          Cmd: Cmd.GROUP_IM,
          Raw: raw,
        }),
      ) as { MessageIDs: { MsgID: number; PrevMsgID: number }[] };
      assert.equal(again.MessageIDs[0].PrevMsgID, r.MessageIDs[1].MsgID, "the member's previous message");
      const sync = asRecorded(
        'SyncMessage',
        await go.call('SyncMessage', { AppID: APP, Uid: 502, DeviceID: 0, LastMsgID: 0 }),
      ) as {
        Messages: { MsgID: number }[];
      };
      assert.deepEqual(
        sync.Messages.map((x) => x.MsgID),
        [again.MessageIDs[0].MsgID, r.MessageIDs[1].MsgID],
      );
    });

    it('Ping answers 0', async () => {
      assert.equal(await go.call('Ping', 1), 0n);
    });

    it('refusals carry the Nest transport sentence as the Go call error; the connection stays', async () => {
      await assertRefusalsAsNest(NETRPC, server, go);
      assert.equal(await go.call('Ping', 0), 0n);
    });

    it("unknown service or method and a mistyped argument get Go's error strings; the connection stays", async () => {
      const sync = { AppID: APP, Uid: 1, DeviceID: 1, LastMsgID: 0 };
      const refused = (p: Promise<unknown>, message: string) =>
        assert.rejects(p, (e: Error) => e instanceof NetrpcCallError && e.message === message);
      await refused(
        go.call('SyncMessage', sync, { serviceMethod: 'Storage.SyncMessage' }),
        "rpc: can't find service Storage.SyncMessage",
      );
      await refused(
        go.call('SyncMessage', sync, { serviceMethod: 'RPCStorage.SyncMessages' }),
        "rpc: can't find method RPCStorage.SyncMessages",
      );
      await refused(
        go.call('SyncMessage', sync, { serviceMethod: 'SyncMessage' }),
        'rpc: service/method request ill-formed: SyncMessage',
      );
      await refused(
        go.call('SavePeerMessage', 5, { argType: GoBasic.int }),
        'gob: type mismatch in decoder: want struct type storage.PeerMessage; got non-struct',
      );
      await refused(
        go.call(
          'SyncMessage',
          { AppID: 'seven' },
          { argType: goStruct(100, 'SyncHistory', [['AppID', GoBasic.string]]) },
        ),
        'gob: wrong type (int64) for received field SyncHistory.AppID',
      );
      await refused(
        go.call('SavePeerMessage', { AppID: APP, Uid: 1, Cmd: 2n ** 40n }),
        'value for "Cmd" out of range',
      );
      assert.deepEqual(
        asRecorded(
          'SyncMessage',
          await go.call('SyncMessage', { AppID: APP, Uid: 424242, DeviceID: 0, LastMsgID: 0 }),
        ),
        { Messages: [], LastMsgID: 0, HasMore: false },
      );
    });

    it('net/rpc calls count in /summary like Nest transport calls', async () => {
      await assertCountedInSummary(server, go);
    });
  });

  describe('pipelined calls on one connection', () => {
    it('1,000 calls in flight: every answer matched to its call by Seq, all stored', async () => {
      const go = await netrpcClient(server);
      try {
        await assertConcurrentSaves(NETRPC, go, 21);
      } finally {
        go.close();
      }
    });

    it('answers in the order calls finish, each with its Seq (a read overtakes a save)', async () => {
      const raw = await RawNetrpc.open(server.ports.netrpc);
      try {
        const enc = new GobStreamEncoder();
        const save = encodeCall(
          enc,
          41,
          'RPCStorage.SavePeerMessage',
          argType(NETRPC_METHODS.get('SavePeerMessage')!),
          { AppID: 22, Uid: 1, DeviceID: 1, Cmd: Cmd.IM, Raw: imBody(2, 1, 'slow') },
        );
        const read = encodeCall(enc, 42, 'RPCStorage.Ping', GoBasic.int, 1);
        const unknown = encodeCall(enc, 43, 'RPCStorage.Nope', GoBasic.int, 1);
        // One write: the server reads all three before any answer goes out.
        const answers = await raw.exchange(Buffer.concat([save, read, unknown]), 6);
        const { values } = decodeAll(answers);
        const headers = [0, 2, 4].map((i) => fields(values[i]));
        assert.deepEqual(
          headers.map((h) => [h.get('ServiceMethod'), h.get('Seq'), h.get('Error') ?? '']),
          [
            ['RPCStorage.Nope', 43n, "rpc: can't find method RPCStorage.Nope"],
            ['RPCStorage.Ping', 42n, ''],
            ['RPCStorage.SavePeerMessage', 41n, ''],
          ],
        );
      } finally {
        raw.close();
      }
    });
  });
});

describeOnSlave(NETRPC);
describeListenTaken(NETRPC);
