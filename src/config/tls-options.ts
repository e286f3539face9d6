/**
 * TLS for the RPC, sync, gorpc and netrpc listeners and for a slave's link to its master, from the config keys
 * tls_cert, tls_key and tls_ca. The files are read once, at start-up: a missing or unreadable file, or a
 * key that does not match its certificate, stops the server with one line naming the setting.
 */
import * as fs from 'node:fs';
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
