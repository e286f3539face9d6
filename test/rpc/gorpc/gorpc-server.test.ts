import assert from 'node:assert/strict';
import * as net from 'node:net';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Cmd } from '../../../src/format/constants.js';
import { GorpcCallError, type GorpcClient } from '../../../src/rpc/gorpc/gorpc-client.js';
import { removeDir } from '../../support/fixtures.js';
import { clientFor, freePortFor, imBody } from '../../support/rpc-client.js';
import { startServer, type ServerProcess } from '../../support/server-process.js';
import {
  asRecorded,
  expectedServerSide,
  gorpcClient,
  inflateFlushed,
  loadCaptures,
  replay,
} from './support.js';

const APP = 9;

async function summary(server: ServerProcess): Promise<Record<string, number>> {
  const res = await fetch(`${server.httpBase}/summary`);
  return (await res.json()) as Record<string, number>;
}

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
      const nest = clientFor(server);
      try {
        const bad = { appId: APP, uid: 1, deviceId: 1, cmd: 99, raw: imBody(1, 2, 'x') };
        const nestMessage = await nest.savePeerMessage(bad).then(
          () => 'accepted',
          (e: Error) => e.message,
        );
        await assert.rejects(
          go.call('SavePeerMessage', { AppID: APP, Uid: 1, DeviceID: 1, Cmd: 99, Raw: imBody(1, 2, 'x') }),
          (e: Error) =>
            e instanceof GorpcCallError &&
            e.message === nestMessage &&
            /^SavePeerMessage: cmd must be one of/.test(e.message),
        );
        await assert.rejects(
          go.call('GetLatestMessage', { AppID: APP, Uid: 1, Limit: 0 }),
          (e: Error) =>
            e instanceof GorpcCallError && /^GetLatestMessage: limit must be at least 1/.test(e.message),
        );
      } finally {
        await nest.close();
      }
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
      const before = await summary(server);
      await go.call('SavePeerMessage', {
        AppID: APP,
        Uid: 3,
        DeviceID: 1,
        Cmd: Cmd.IM,
        Raw: imBody(1, 3, 'c'),
      });
      await go.call('SyncMessage', { AppID: APP, Uid: 3, DeviceID: 1, LastMsgID: 0 });
      const now = await summary(server);
      assert.equal(now.request_count - before.request_count, 2);
      assert.equal(now.peer_message_count - before.peer_message_count, 1);
    });
  });
});

describe('gorpc on a slave', () => {
  let server: ServerProcess;
  before(async () => {
    server = await startServer({
      masterAddress: `127.0.0.1:${await freePortFor()}`,
      config: { gorpc_listen: '127.0.0.1:0' },
      http: false,
    });
  });
  after(async () => {
    await server?.stop();
    if (server) removeDir(path.dirname(server.dataDir));
  });

  it('refuses writes as a read-only replica and answers reads', async () => {
    const go = await gorpcClient(server);
    try {
      await assert.rejects(
        go.call('SavePeerMessage', { AppID: APP, Uid: 1, DeviceID: 1, Cmd: Cmd.IM, Raw: imBody(1, 2, 'x') }),
        (e: Error) =>
          e instanceof GorpcCallError &&
          /^SavePeerMessage: read-only replica: this server replicates/.test(e.message),
      );
      assert.deepEqual(
        asRecorded(await go.call('SyncMessage', { AppID: APP, Uid: 1, DeviceID: 1, LastMsgID: 0 })),
        {
          Messages: [],
          LastMsgID: 0,
        },
      );
    } finally {
      go.close();
    }
  });
});

describe('gorpc_listen that cannot be used', () => {
  it('stops start-up with one line naming the key, its value and the cause', async () => {
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as net.AddressInfo).port;
    const server = await startServer({
      config: { gorpc_listen: `127.0.0.1:${port}` },
      http: false,
      waitReady: false,
    });
    try {
      const { code } = await server.waitExit();
      assert.equal(code, 1);
      assert.ok(
        server
          .lines()
          .some((l) => l.includes(`start-up failed: gorpc_listen=127.0.0.1:${port}: address already in use`)),
        server.logText(),
      );
    } finally {
      taken.close();
      removeDir(path.dirname(server.dataDir));
    }
  });
});
