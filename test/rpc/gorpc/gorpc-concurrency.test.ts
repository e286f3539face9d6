import assert from 'node:assert/strict';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Cmd } from '../../../src/format/constants.js';
import { removeDir } from '../../support/fixtures.js';
import { imBody } from '../../support/rpc-client.js';
import { startServer, type ServerProcess } from '../../support/server-process.js';
import { asRecorded, gorpcClient } from './support.js';

describe('many calls in flight on one gorpc connection', () => {
  let server: ServerProcess;
  before(async () => {
    server = await startServer({ config: { gorpc_listen: '127.0.0.1:0' }, http: false });
  });
  after(async () => {
    await server?.stop();
    if (server) removeDir(path.dirname(server.dataDir));
  });

  for (const compress of [false, true]) {
    it(`1,000 concurrent saves (${compress ? 'deflate' : 'plain'}): all answered, distinct ids, all stored`, async () => {
      const go = await gorpcClient(server, compress);
      try {
        const app = compress ? 2 : 1;
        const users = 50;
        const ids = await Promise.all(
          Array.from({ length: 1000 }, (_, i) =>
            go.call('SavePeerMessage', {
              AppID: app,
              Uid: 1 + (i % users),
              DeviceID: 1,
              Cmd: Cmd.IM,
              Raw: imBody(9, 1 + (i % users), `m${i}`),
            }),
          ),
        );
        assert.equal(new Set(ids.map(String)).size, 1000, 'distinct msgids');
        assert.equal(go.inFlight, 0);
        // Each user's queue holds its 20 saves, with exactly the ids the calls were answered with.
        for (let u = 1; u <= users; u++) {
          const sync = asRecorded(
            await go.call('SyncMessage', { AppID: app, Uid: u, DeviceID: 0, LastMsgID: 0 }),
          ) as {
            Messages: { MsgID: number }[];
          };
          const mine = ids.filter((_, i) => 1 + (i % users) === u).map(Number);
          assert.deepEqual(
            sync.Messages.map((m) => m.MsgID).sort((a, b) => a - b),
            mine.sort((a, b) => a - b),
          );
        }
      } finally {
        go.close();
      }
    });
  }

  it('answers by ID in the order calls finish, not the order they were sent', async () => {
    const go = await gorpcClient(server);
    try {
      const order: string[] = [];
      // The save waits for its fdatasync; the read right behind it does not.
      const save = go
        .call('SavePeerMessage', { AppID: 3, Uid: 1, DeviceID: 1, Cmd: Cmd.IM, Raw: imBody(2, 1, 'slow') })
        .then(() => order.push('save'));
      const read = go
        .call('GetNewCount', { AppID: 3, Uid: 99, DeviceID: 0, LastMsgID: 0 })
        .then(() => order.push('read'));
      await Promise.all([save, read]);
      assert.deepEqual(order, ['read', 'save']);
    } finally {
      go.close();
    }
  });
});
