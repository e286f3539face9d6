import assert from 'node:assert/strict';
import * as path from 'node:path';
import { connect as netConnect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { ImsClient } from '../../src/client/index.js';
import { NetrpcClient } from '../../src/rpc/netrpc/netrpc-client.js';
import { removeDir, tempDir } from '../support/fixtures.js';
import { scrape } from '../support/prometheus.js';
import { imBody } from '../support/rpc-client.js';
import { startServer, type ServerProcess } from '../support/server-process.js';
import { hasOpenssl, makeCerts, type TestCerts } from '../support/test-certs.js';
import { waitFor } from '../support/wait.js';

describe('TLS: mutual TLS on the RPC and sync ports', () => {
  const work = tempDir('ims-tls-');
  let certs: TestCerts;
  let tlsConfig: Record<string, string>;
  let master: ServerProcess;
  let slave: ServerProcess;
  const clients: ImsClient[] = [];

  const client = (server: ServerProcess, tls?: import('node:tls').ConnectionOptions) => {
    const c = new ImsClient({
      host: '127.0.0.1',
      port: server.ports.rpc,
      timeoutMs: 3000,
      ...(tls ? { tls } : {}),
    });
    clients.push(c);
    return c;
  };

  before(async () => {
    assert.ok(hasOpenssl(), 'these tests make their certificates with the openssl command, which is missing');
    certs = makeCerts(work);
    tlsConfig = { tls_cert: certs.serverCert, tls_key: certs.serverKey, tls_ca: certs.ca };
    master = await startServer({
      config: { ...tlsConfig, gorpc_listen: '127.0.0.1:0', netrpc_listen: '127.0.0.1:0' },
    });
    slave = await startServer({ masterAddress: master.syncAddress, config: tlsConfig });
  });
  after(async () => {
    for (const c of clients) await c.close();
    await slave?.stop();
    await master?.stop();
    removeDir(work);
  });

  it('RPC accepts a client certificate from tls_ca and refuses none, another CA, and plain TCP', async () => {
    await master.waitForLog(/rpc listening on \S+ \(TLS, client certificates required\)/);
    const ca = certs.read(certs.ca);
    const good = client(master, { ca, cert: certs.read(certs.clientCert), key: certs.read(certs.clientKey) });
    const saved = await good.savePeerMessage({
      appId: 1,
      uid: 2,
      deviceId: 3,
      cmd: 4,
      raw: imBody(1, 2, 'over tls'),
    });
    assert.ok(saved.msgId > 0);

    const refusals: [string, ImsClient][] = [
      ['no certificate', client(master, { ca })],
      [
        'a certificate of another CA',
        client(master, {
          ca,
          cert: certs.read(certs.otherClientCert),
          key: certs.read(certs.otherClientKey),
        }),
      ],
      ['plain TCP', client(master)],
    ];
    for (const [what, c] of refusals) {
      await assert.rejects(c.ping(), `${what} must be refused`);
    }
    await master.waitForLog(/rpc: TLS handshake with 127\.0\.0\.1:\d+ failed/);
    // The good connection was not disturbed.
    assert.deepEqual(await good.ping(), { pong: true });
  });

  it('gorpc serves TLS too: a client certificate completes the handshake, plain TCP and none are refused', async () => {
    const port = master.ports.gorpc;
    const ca = certs.read(certs.ca);
    // With TLS 1.3 the server checks the client certificate after the client's handshake ends, so what
    // tells acceptance apart is whether the session stays open after gorpc's first byte (compression
    // off): a refused one is closed with an alert at once. A period is what is asserted.
    const session = (options: import('node:tls').ConnectionOptions) =>
      new Promise<'open' | 'closed'>((resolve) => {
        const s = tlsConnect({ host: '127.0.0.1', port, ...options });
        s.on('error', () => undefined);
        s.once('close', () => resolve('closed'));
        s.once('secureConnect', () => {
          s.write(Buffer.from([0]));
          setTimeout(() => {
            s.removeAllListeners('close');
            s.destroy();
            resolve('open');
          }, 800).unref();
        });
      });
    const cert = { cert: certs.read(certs.clientCert), key: certs.read(certs.clientKey) };
    assert.equal(await session({ ca, ...cert }), 'open');
    assert.equal(await session({ ca }), 'closed', 'no client certificate');
    // Plain TCP: the server answers a gorpc handshake byte with a TLS alert or a close, never gorpc.
    const plain = await new Promise<Buffer>((resolve) => {
      const chunks: Buffer[] = [];
      const s = netConnect({ host: '127.0.0.1', port }, () => s.write(Buffer.from([0])));
      s.on('data', (c: Buffer) => chunks.push(c));
      s.on('error', () => undefined);
      s.on('close', () => resolve(Buffer.concat(chunks)));
      setTimeout(() => s.destroy(), 3000).unref();
    });
    assert.ok(plain.length === 0 || plain[0] === 0x15, `plain TCP got ${plain.toString('hex')}`);
  });

  it('net/rpc serves TLS too: calls with a client certificate, none and plain TCP refused', async () => {
    const port = master.ports.netrpc;
    const ca = certs.read(certs.ca);
    const cert = { cert: certs.read(certs.clientCert), key: certs.read(certs.clientKey) };
    const good = await NetrpcClient.connect('127.0.0.1', port, { tls: { ca, ...cert } });
    try {
      assert.equal(await good.call('Ping', 1), 0n);
      const saved = await good.call('SavePeerMessage', {
        AppID: 1,
        Uid: 5,
        DeviceID: 3,
        Cmd: 4,
        Raw: imBody(1, 5, 'net/rpc over tls'),
      });
      assert.ok(saved !== null);
    } finally {
      good.close();
    }
    // With TLS 1.3 a missing client certificate is refused after the client's handshake ends: the
    // CONNECT then gets no 200 line, only the close.
    await assert.rejects(NetrpcClient.connect('127.0.0.1', port, { tls: { ca } }), 'no client certificate');
    await assert.rejects(
      NetrpcClient.connect('127.0.0.1', port, {
        tls: { ca, cert: certs.read(certs.otherClientCert), key: certs.read(certs.otherClientKey) },
      }),
      'a certificate of another CA',
    );
    await assert.rejects(NetrpcClient.connect('127.0.0.1', port), 'plain TCP');
    await master.waitForLog(/Netrpc\] refused a TLS connection from 127\.0\.0\.1/);
  });

  it('a slave presents its certificate and replicates from its master over mutual TLS', async () => {
    const ca = certs.read(certs.ca);
    const tls = { ca, cert: certs.read(certs.clientCert), key: certs.read(certs.clientKey) };
    await client(master, tls).savePeerMessage({
      appId: 1,
      uid: 9,
      deviceId: 3,
      cmd: 4,
      raw: imBody(1, 9, 'to the slave'),
    });
    await waitFor(
      async () => {
        const s = await scrape(slave.httpBase);
        return (
          s.value('ims_slave_connected', { master: master.syncAddress }) === 1 &&
          s.value('ims_slave_lag_bytes', { master: master.syncAddress }) === 0 &&
          (s.value('ims_slave_records_applied_total') ?? 0) >= 4
        );
      },
      { what: 'the slave caught up over TLS' },
    );
    const r = await client(slave, tls).syncMessage({ appId: 1, uid: 9, deviceId: 0, lastMsgId: 0 });
    assert.equal(r.messages.length, 1);
    assert.match(r.messages[0].raw.toString('latin1'), /to the slave/);
  });

  it('a slave without a certificate is refused by a master that requires one', async () => {
    const plain = await startServer({ masterAddress: master.syncAddress });
    try {
      await master.waitForLog(/sync: TLS handshake with 127\.0\.0\.1:\d+ failed/);
      const s = await scrape(plain.httpBase);
      assert.equal(s.value('ims_slave_records_applied_total'), 0);
    } finally {
      await plain.stop();
    }
  });

  it('an unreadable tls_cert stops start-up with one line naming the setting, the path and the cause', async () => {
    const missing = path.join(work, 'nope.crt');
    const server = await startServer({ config: { ...tlsConfig, tls_cert: missing }, waitReady: false });
    const { code } = await server.waitExit();
    assert.equal(code, 1);
    const failures = server.output.filter((l) => l.includes('start-up failed'));
    assert.equal(failures.length, 1, server.logText());
    assert.match(
      failures[0],
      new RegExp(`tls_cert=${missing.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: cannot read: no such file`),
    );
    assert.equal(
      server.output.some((l) => /Storage\] opened/.test(l)),
      false,
      'storage was not touched',
    );
  });
});
