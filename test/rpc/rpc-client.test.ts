import assert from 'node:assert/strict';
import * as net from 'node:net';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { ImsClient, ImsRpcError, ImsTimeoutError } from '../../src/client/index.js';
import { Cmd } from '../../src/format/constants.js';
import { removeDir } from '../support/fixtures.js';
import { clientFor, freePortFor } from '../support/rpc-client.js';
import { startServer } from '../support/server-process.js';

describe('ImsClient connection behaviour', () => {
  it('times a request out with ImsTimeoutError when the peer never answers', async () => {
    const sockets: net.Socket[] = [];
    const silent = net.createServer((s) => sockets.push(s)); // accepts, reads, never replies
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const client = new ImsClient({
      host: '127.0.0.1',
      port: (silent.address() as net.AddressInfo).port,
      timeoutMs: 200,
    });
    try {
      const started = Date.now();
      await assert.rejects(client.ping(), (err: Error) => {
        assert.ok(err instanceof ImsTimeoutError);
        assert.match(err.message, /^Ping: no answer from ims within 200 ms/);
        return true;
      });
      assert.ok(Date.now() - started < 2000);
      // The connection was kept: the next request uses the same socket.
      await assert.rejects(client.ping(), ImsTimeoutError);
      assert.equal(sockets.length, 1);
    } finally {
      await client.close();
      sockets.forEach((s) => s.destroy());
      await new Promise((r) => silent.close(r));
    }
  });

  it('fails a request when nothing listens (ECONNREFUSED), naming the pattern', async () => {
    const client = new ImsClient({ host: '127.0.0.1', port: await freePortFor(), timeoutMs: 2000 });
    await assert.rejects(client.ping(), (err: Error) => {
      assert.ok(err instanceof ImsRpcError, String(err));
      assert.match(err.message, /^Ping: .*ECONNREFUSED/);
      return true;
    });
    await client.close();
  });

  it('reconnects on the next request after the server went away and came back', async () => {
    let server = await startServer({ config: { block_size: 1048576 } });
    const workDirs = [path.dirname(server.dataDir)];
    const client = clientFor(server, 5000);
    try {
      const saved = await client.savePeerMessage({
        appId: 1,
        uid: 2,
        deviceId: 3,
        cmd: Cmd.SYSTEM,
        raw: Buffer.from('kept'),
      });
      await server.kill9();
      await assert.rejects(client.ping(), ImsRpcError);
      server = await startServer({
        dataDir: server.dataDir,
        ports: server.ports,
        config: { block_size: 1048576 },
      });
      workDirs.push(path.dirname(server.configPath));
      // Same client object: the next request opens a new connection by itself.
      assert.deepEqual(await client.ping(), { pong: true });
      const sync = await client.syncMessage({ appId: 1, uid: 2, deviceId: 0, lastMsgId: 0 });
      assert.deepEqual(
        sync.messages.map((m) => [m.msgId, m.raw.toString()]),
        [[saved.msgId, 'kept']],
      );
    } finally {
      await client.close();
      await server.stop();
      workDirs.forEach(removeDir);
    }
  });
});
