/**
 * TLS for the RPC, sync, gorpc and netrpc listeners and for a slave's link to its master, from the config keys
 * tls_cert, tls_key and tls_ca. The files are read once, at start-up: a missing or unreadable file, or a
 * key that does not match its certificate, stops the server with one line naming the setting.
 */
import * as fs from 'node:fs';
import type * as net from 'node:net';
import * as tls from 'node:tls';
import type { ImsConfig } from './ims-config.js';
import { SettingError } from './setting-error.js';

export interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
  /** Present: peers must show a certificate signed by it (mutual TLS). */
  ca: Buffer | null;
}

function readPem(key: 'tls_cert' | 'tls_key' | 'tls_ca', file: string): Buffer {
  let pem: Buffer;
  try {
    pem = fs.readFileSync(file);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const cause =
      e.code === 'ENOENT' ? 'no such file' : e.code === 'EACCES' ? 'permission denied' : e.message;
    throw new SettingError(key, file, `cannot read: ${cause}`);
  }
  if (!pem.includes('-----BEGIN ')) throw new SettingError(key, file, 'not a PEM file (no -----BEGIN line)');
  return pem;
}

/** The config's TLS files, read and checked, or null when TLS is off (no tls_cert). */
export function loadTlsMaterial(
  config: Pick<ImsConfig, 'tls_cert' | 'tls_key' | 'tls_ca'>,
): TlsMaterial | null {
  if (!config.tls_cert || !config.tls_key) return null;
  const material: TlsMaterial = {
    cert: readPem('tls_cert', config.tls_cert),
    key: readPem('tls_key', config.tls_key),
    ca: config.tls_ca ? readPem('tls_ca', config.tls_ca) : null,
  };
  try {
    tls.createSecureContext({ cert: material.cert, key: material.key });
  } catch (err) {
    throw new SettingError(
      'tls_key',
      config.tls_key,
      `does not fit tls_cert ${config.tls_cert}: ${(err as Error).message}`,
    );
  }
  if (material.ca) {
    try {
      tls.createSecureContext({ ca: material.ca });
    } catch (err) {
      throw new SettingError('tls_ca', config.tls_ca!, `not a usable CA bundle: ${(err as Error).message}`);
    }
  }
  return material;
}

/**
 * Options for tls.createServer (the RPC, sync, gorpc and netrpc listeners). With a CA, a client must present a
 * certificate it signed: the handshake fails otherwise, before a byte of the protocol is read.
 */
export function serverTlsOptions(m: TlsMaterial): tls.TlsOptions {
  return {
    cert: m.cert,
    key: m.key,
    ...(m.ca ? { ca: m.ca, requestCert: true, rejectUnauthorized: true } : {}),
  };
}

/**
 * Options for tls.connect (a slave to its master): the slave presents this server's certificate, and
 * checks the master's against tls_ca (the system's CAs without one).
 */
export function clientTlsOptions(m: TlsMaterial): tls.ConnectionOptions {
  return { cert: m.cert, key: m.key, ...(m.ca ? { ca: m.ca } : {}) };
}

/** The TLS material of this process (null: TLS off), provided to every module by ConfigModule. */
export class TlsConfig {
  constructor(readonly material: TlsMaterial | null) {}
}

/**
 * Reports each failed TLS handshake on `server` with the peer's `address:port` and the cause. By the
 * time `tlsClientError` fires the TLS socket is often destroyed and reads its remoteAddress as
 * undefined, so the peer is noted when the TCP connection arrives (the TLS socket wraps that one as
 * `_parent`, set by Node's TLS server).
 */
export function reportTlsFailures(server: tls.Server, report: (peer: string, cause: string) => void): void {
  const peers = new WeakMap<net.Socket, string>();
  server.on('connection', (raw: net.Socket) => peers.set(raw, `${raw.remoteAddress}:${raw.remotePort}`));
  server.on('tlsClientError', (err: Error, socket: tls.TLSSocket) => {
    const inner = (socket as { _parent?: net.Socket })._parent;
    const own = socket.remoteAddress ? `${socket.remoteAddress}:${socket.remotePort}` : undefined;
    report((inner && peers.get(inner)) ?? own ?? 'an unknown peer', tlsFailureCause(err, socket));
  });
}

/**
 * Why a handshake failed, in an operator's words. Node destroys a connection whose client certificate
 * fails verification without an error of its own (the listener sees "socket hang up"); the reason is
 * in the socket's authorizationError.
 */
function tlsFailureCause(err: Error, socket: tls.TLSSocket): string {
  // Typed as an Error, but Node sets the verification code (a string) there.
  const authorization: unknown = socket.authorizationError;
  const refused =
    typeof authorization === 'string'
      ? authorization
      : authorization instanceof Error
        ? authorization.message
        : null;
  if (refused) return `client certificate refused: ${refused} (not signed by tls_ca?)`;
  const code = (err as NodeJS.ErrnoException).code;
  if (
    code === 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE' ||
    /did not return a certificate/.test(err.message)
  )
    return 'the client presented no certificate (tls_ca requires one)';
  if (code === 'ERR_SSL_WRONG_VERSION_NUMBER' || /wrong version number|http request/.test(err.message))
    return `not a TLS client (plain TCP?): ${err.message}`;
  if (code === 'ECONNRESET')
    return 'the client closed the connection during the handshake (does it trust this certificate?)';
  return err.message;
}
