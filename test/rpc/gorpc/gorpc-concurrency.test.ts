import assert from 'node:assert/strict';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Cmd } from '../../../src/format/constants.js';
import { removeDir } from '../../support/fixtures.js';
import { imBody } from '../../support/rpc-client.js';
import { startServer, type ServerProcess } from '../../support/server-process.js';
import { assertConcurrentSaves } from '../go-transport.js';
import { GORPC, gorpcClient } from './support.js';

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
        await assertConcurrentSaves(GORPC, go, compress ? 2 : 1);
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
