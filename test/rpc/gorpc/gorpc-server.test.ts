import assert from 'node:assert/strict';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Cmd } from '../../../src/format/constants.js';
import type { GorpcClient } from '../../../src/rpc/gorpc/gorpc-client.js';
import { removeDir } from '../../support/fixtures.js';
import { imBody } from '../../support/rpc-client.js';
import { startServer, type ServerProcess } from '../../support/server-process.js';
import {
  assertCountedInSummary,
  assertRefusalsAsNest,
  describeListenTaken,
  describeOnSlave,
} from '../go-transport.js';
import {
  GORPC,
  asRecorded,
  expectedServerSide,
  gorpcClient,
  inflateFlushed,
  loadCaptures,
  replay,
} from './support.js';

const APP = 9;

describe('gorpc transport against the real server', () => {
  let server: ServerProcess;

  before(async () => {
    server = await startServer({ config: { gorpc_listen: '127.0.0.1:0' } });
  });
  after(async () => {
    await server?.stop();
    if (server) removeDir(path.dirname(server.dataDir));
  });

  it('reports the gorpc port it is bound to', () => {
    assert.ok(server.ports.gorpc > 0);
    assert.ok(server.lines().some((l) => /gorpc listening on 127\.0\.0\.1:\d+/.test(l)));
  });

  // Both replays run first, on the empty store, in the order Go's were captured.
  for (const capture of loadCaptures()) {
    it(`replays Go's ${capture.mode} capture one call at a time: Go's server side byte for byte`, async () => {
      const got = await replay(server.ports.gorpc, capture);
      const want = expectedServerSide(capture);
      assert.equal(got.toString('hex'), want.toString('hex'));
      if (capture.mode === 'deflate') assert.ok(inflateFlushed(capture.s2c).length === want.length);
    });
  }

  describe('every method round trip', () => {
    let go: GorpcClient;
    before(async () => {
      go = await gorpcClient(server, true);
    });
    after(() => go?.close());

    it('SavePeerMessage/SyncMessage/GetNewCount/GetLatestMessage as Go types, also ids above 2^53', async () => {
      const big = 2n ** 60n + 7n;
      const raw = imBody(1, 2, 'héllo');
      const id = await go.call('SavePeerMessage', {
        AppID: APP,
        Uid: big,
        DeviceID: big,
        Cmd: Cmd.IM,
        Raw: raw,
      });
      assert.equal(typeof id, 'bigint');
      const sync = await go.call('SyncMessage', { AppID: APP, Uid: big, DeviceID: 1, LastMsgID: 0 });
      assert.deepEqual(asRecorded(sync), {
        Messages: [{ MsgID: Number(id), DeviceID: Number(big), Cmd: Cmd.IM, Raw: raw.toString('base64') }],
        LastMsgID: Number(id),
      });
      // The device id is an int64 on the wire, not rounded through a double.
      const [m] = (sync as { fields: Map<string, unknown> }).fields.get('Messages') as {
        fields: Map<string, unknown>;
      }[];
      assert.equal(m.fields.get('DeviceID'), big);
      assert.equal(await go.call('GetNewCount', { AppID: APP, Uid: big, DeviceID: 0, LastMsgID: 0 }), 1n);
      assert.equal(await go.call('GetNewCount', { AppID: APP, Uid: big, DeviceID: 0, LastMsgID: id }), 0n);
      const latest = await go.call('GetLatestMessage', { AppID: APP, Uid: big, Limit: 5 });
      assert.deepEqual(asRecorded(latest), (asRecorded(sync) as { Messages: unknown[] }).Messages);
    });

    it('SaveGroupMessage/SyncGroupMessage', async () => {
      const raw = imBody(1, 77, 'group');
      const first = await go.call('SaveGroupMessage', {
        AppID: APP,
        GroupID: 77,
        DeviceID: 3,
        Cmd: Cmd.GROUP_IM,
        Raw: raw,
      });
      const second = await go.call('SaveGroupMessage', {
        AppID: APP,
        GroupID: 77,
        DeviceID: 3,
        Cmd: Cmd.GROUP_IM,
        Raw: raw,
      });
      const sync = asRecorded(
        await go.call('SyncGroupMessage', {
          AppID: APP,
          Uid: 1,
          DeviceID: 1,
          GroupID: 77,
          LastMsgID: first,
          Timestamp: 0,
        }),
      );
      assert.deepEqual(sync, {
        Messages: [{ MsgID: Number(second), DeviceID: 3, Cmd: Cmd.GROUP_IM, Raw: raw.toString('base64') }],
        LastMsgID: Number(second),
      });
    });

    it('SavePeerGroupMessage answers msgid, prev_msgid for each member (newer im)', async () => {
      const raw = imBody(1, 88, 'fan-out');
      const r = (await go.call('SavePeerGroupMessage', {
        AppID: APP,
        Members: [501n, 502n],
        DeviceID: 1,
        Cmd: Cmd.GROUP_IM,
        Raw: raw,
      })) as bigint[];
      assert.equal(r.length, 4);
      assert.deepEqual([r[1], r[3]], [0n, 0n]);
      const again = (await go.call('SavePeerGroupMessage', {
        AppID: APP,
        Members: [501n],
        DeviceID: 1,
        Cmd: Cmd.GROUP_IM,
        Raw: raw,
      })) as bigint[];
      assert.equal(again[1], r[0], "prev_msgid is the member's previous message");
    });

    it('refusals carry the Nest transport sentence in the error a Go caller sees', async () => {
      await assertRefusalsAsNest(GORPC, server, go);
    });

    it("a request of the wrong type is answered with Go dispatcher's sentence, the connection stays", async () => {
      await assert.rejects(
        go.call(
          'SyncMessage',
          { AppID: APP, Uid: 1, DeviceID: 1, Cmd: 4, Raw: Buffer.alloc(1) },
          '*main.PeerMessage',
        ),
        (e: Error) =>
          e.message ===
          'gorpc.Dispatcher: unexpected request type for method [.SyncMessage]: *main.PeerMessage. Expected *main.SyncHistory',
      );
      assert.equal(await go.call('GetNewCount', { AppID: APP, Uid: 424242, DeviceID: 0, LastMsgID: 0 }), 0n);
    });

    it('gorpc calls count in /summary like Nest transport calls', async () => {
      await assertCountedInSummary(server, go);
    });
  });
});

describeOnSlave(GORPC);
describeListenTaken(GORPC);
