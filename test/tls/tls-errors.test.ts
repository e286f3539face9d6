/**
 * A TLS connection that fails tells the client why (its ImsRpcError, not a bare `Connection closed`),
 * and the server's log line names the peer's address and port, and the cause.
 */
import assert from 'node:assert/strict';
import type * as tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { ImsClient, ImsRpcError } from '../../src/client/index.js';
import { removeDir, tempDir } from '../support/fixtures.js';
import { imBody } from '../support/rpc-client.js';
import { startServer, type ServerProcess } from '../support/server-process.js';
import { hasOpenssl, makeCerts, type TestCerts } from '../support/test-certs.js';

describe('TLS failures name their cause', () => {
  const work = tempDir('ims-tls-errors-');
  let certs: TestCerts;
  let secure: ServerProcess;
  let plain: ServerProcess;

  before(async () => {
    assert.ok(hasOpenssl(), 'these tests make their certificates with the openssl command, which is missing');
    certs = makeCerts(work);
    [secure, plain] = await Promise.all([
      startServer({ config: { tls_cert: certs.serverCert, tls_key: certs.serverKey, tls_ca: certs.ca } }),
      startServer(),
    ]);
  });
  after(async () => {
    await Promise.all([secure?.stop(), plain?.stop()]);
    removeDir(work);
  });

  /** The error of one save (a save, so that notWritten and mayBeStored say something) on a new client. */
  async function failure(server: ServerProcess, options?: tls.ConnectionOptions): Promise<ImsRpcError> {
    const client = new ImsClient({
      host: '127.0.0.1',
      port: server.ports.rpc,
      timeoutMs: 5000,
      ...(options ? { tls: options } : {}),
    });
    try {
      await client.savePeerMessage({ appId: 1, uid: 2, deviceId: 3, cmd: 4, raw: imBody(1, 2, 'x') });
    } catch (err) {
      assert.ok(err instanceof ImsRpcError, String(err));
      return err;
    } finally {
      await client.close();
    }
    assert.fail('the save must fail');
  }

  const certOf = (which: 'client' | 'other') =>
    which === 'client'
      ? { cert: certs.read(certs.clientCert), key: certs.read(certs.clientKey) }
      : { cert: certs.read(certs.otherClientCert), key: certs.read(certs.otherClientKey) };

  it('no client certificate: the client says the server requires one; the log names the peer', async () => {
    const err = await failure(secure, { ca: certs.read(certs.ca) });
    assert.match(
      err.message,
      /^SavePeerMessage: TLS handshake failed: 127\.0\.0\.1:\d+ requires a client certificate \(TLS alert "certificate required"\): pass tls: \{ cert, key \}/,
    );
    // Refused during the handshake: the server never read the request.
    assert.equal(err.notWritten, true);
    assert.equal(err.mayBeStored, false);
    await secure.waitForLog(
      /rpc: TLS handshake with 127\.0\.0\.1:\d+ failed: the client presented no certificate \(tls_ca requires one\)/,
    );
  });

  it("the server's certificate not trusted by the client: the client names the verification error", async () => {
    const err = await failure(secure, certOf('client'));
    assert.match(
      err.message,
      /^SavePeerMessage: TLS handshake failed: the certificate of 127\.0\.0\.1:\d+ is not trusted: .*\(SELF_SIGNED_CERT_IN_CHAIN\); pass tls: \{ ca \}/,
    );
    assert.equal(err.notWritten, true);
    await secure.waitForLog(
      /rpc: TLS handshake with 127\.0\.0\.1:\d+ failed: the client closed the connection during the handshake/,
    );
  });

  it('a client certificate of another CA: the client points at it; the log says why it was refused', async () => {
    const err = await failure(secure, { ca: certs.read(certs.ca), ...certOf('other') });
    assert.match(
      err.message,
      /^SavePeerMessage: Connection closed by 127\.0\.0\.1:\d+ right after the TLS handshake, before any answer: it may have refused the client certificate/,
    );
    await secure.waitForLog(
      /rpc: TLS handshake with 127\.0\.0\.1:\d+ failed: client certificate refused: UNABLE_TO_VERIFY_LEAF_SIGNATURE/,
    );
  });

  it('plain TCP to the TLS port: the client suggests the tls option; the log says not TLS', async () => {
    const err = await failure(secure);
    assert.match(
      err.message,
      /^SavePeerMessage: Connection closed by 127\.0\.0\.1:\d+ before any answer on a new connection; if the server serves TLS \(tls_cert is set\), pass the tls option$/,
    );
    await secure.waitForLog(
      /rpc: TLS handshake with 127\.0\.0\.1:\d+ failed: not a TLS client \(plain TCP\?\)/,
    );
  });

  it('TLS to a plain port: the client says the handshake failed and to leave out the tls option', async () => {
    const err = await failure(plain, { ca: certs.read(certs.ca) });
    assert.match(
      err.message,
      /^SavePeerMessage: TLS handshake failed: .*; if 127\.0\.0\.1:\d+ serves plain TCP \(no tls_cert\), leave out the tls option$/,
    );
    assert.equal(err.notWritten, true);
  });

  it('no log line ever says "undefined" for a peer', () => {
    assert.ok(
      !secure.output.some((l) => /handshake with (undefined|an unknown peer)/.test(l)),
      secure.logText(),
    );
  });

  it('with the right certificates the same client works', async () => {
    const client = new ImsClient({
      host: '127.0.0.1',
      port: secure.ports.rpc,
      tls: { ca: certs.read(certs.ca), ...certOf('client') },
    });
    try {
      assert.deepEqual(await client.ping(), { pong: true });
    } finally {
      await client.close();
    }
  });
});
