/**
 * Reads the ims config file: `key=value` lines, `#` comments, blank lines ignored. Every problem names
 * the file, the line and the key; nothing else (storage included) is touched before the config is valid.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { plainToInstance } from 'class-transformer';
import { validateSync } from 'class-validator';
import { ImsConfig, parseHostPort } from './ims-config.js';

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

type Kind = 'string' | 'int' | 'int64' | 'enum';
const KEYS: Record<string, { kind: Kind; required: boolean }> = {
  rpc_listen: { kind: 'string', required: true },
  storage_root: { kind: 'string', required: true },
  sync_listen: { kind: 'string', required: true },
  kefu_appid: { kind: 'int64', required: true },
  master_address: { kind: 'string', required: false },
  http_listen_address: { kind: 'string', required: false },
  gorpc_listen: { kind: 'string', required: false },
  netrpc_listen: { kind: 'string', required: false },
  limit: { kind: 'int', required: false },
  group_limit: { kind: 'int', required: false },
  hard_limit: { kind: 'int', required: false },
  queue_format: { kind: 'enum', required: false },
  is_push_system: { kind: 'int', required: false },
  durability: { kind: 'enum', required: false },
  index_save_blocks: { kind: 'int', required: false },
  min_free_disk_mb: { kind: 'int', required: false },
  block_size: { kind: 'int', required: false },
  min_insync_replicas: { kind: 'int', required: false },
  replica_lag_timeout_ms: { kind: 'int', required: false },
  sync_heartbeat_ms: { kind: 'int', required: false },
  sync_stall_timeout_ms: { kind: 'int', required: false },
  sync_max_live_lag_bytes: { kind: 'int', required: false },
  sync_live_batch_delay_ms: { kind: 'int', required: false },
  etcd_endpoints: { kind: 'string', required: false },
  cluster_name: { kind: 'string', required: false },
  shard: { kind: 'int', required: false },
  node_name: { kind: 'string', required: false },
  advertise_host: { kind: 'string', required: false },
  advertise_rpc: { kind: 'string', required: false },
  advertise_sync: { kind: 'string', required: false },
  advertise_http: { kind: 'string', required: false },
  peer_sync_addresses: { kind: 'string', required: false },
  max_frame_bytes: { kind: 'int', required: false },
  max_pending_bytes: { kind: 'int', required: false },
  incomplete_frame_timeout_ms: { kind: 'int', required: false },
  checksum_recheck_s: { kind: 'int', required: false },
  max_connections: { kind: 'int', required: false },
  tls_cert: { kind: 'string', required: false },
  tls_key: { kind: 'string', required: false },
  tls_ca: { kind: 'string', required: false },
  retention_hours: { kind: 'int', required: false },
  retention_bytes: { kind: 'int', required: false },
};

export const CONFIG_KEYS = Object.keys(KEYS);

const INTEGER = /^[+-]?\d+$/;

export function parseConfigText(text: string, source: string): ImsConfig {
  const values: Record<string, unknown> = {};
  const lineOf: Record<string, number> = {};
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, i) => {
    const lineNo = i + 1;
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const eq = line.indexOf('=');
    if (eq <= 0) throw new ConfigError(`${source}:${lineNo}: expected key=value, got "${line}"`);
    const key = line.slice(0, eq).trim();
    const value = line.slice(eq + 1).trim();
    const spec = KEYS[key];
    if (!spec)
      throw new ConfigError(
        `${source}:${lineNo}: unknown key "${key}" (known keys: ${CONFIG_KEYS.join(', ')})`,
      );
    if (key in lineOf)
      throw new ConfigError(`${source}:${lineNo}: key "${key}" is set twice (first on line ${lineOf[key]})`);
    lineOf[key] = lineNo;
    if (spec.kind === 'int' || spec.kind === 'int64') {
      if (!INTEGER.test(value))
        throw new ConfigError(`${source}:${lineNo}: key "${key}": "${value}" is not an integer`);
      const big = BigInt(value);
      if (spec.kind === 'int64') {
        if (big < -(2n ** 63n) || big >= 2n ** 63n)
          throw new ConfigError(`${source}:${lineNo}: key "${key}": ${value} is out of the int64 range`);
        values[key] = big;
      } else {
        if (big > BigInt(Number.MAX_SAFE_INTEGER) || big < -BigInt(Number.MAX_SAFE_INTEGER)) {
          throw new ConfigError(`${source}:${lineNo}: key "${key}": ${value} is too large`);
        }
        values[key] = Number(big);
      }
    } else {
      values[key] = value;
    }
  });
  for (const [key, spec] of Object.entries(KEYS)) {
    if (spec.required && !(key in values))
      throw new ConfigError(`${source}: required key "${key}" is missing`);
  }
  for (const key of [
    'master_address',
    'gorpc_listen',
    'netrpc_listen',
    'http_listen_address',
    'etcd_endpoints',
    'node_name',
    'advertise_host',
    'advertise_rpc',
    'advertise_sync',
    'advertise_http',
    'peer_sync_addresses',
    'tls_cert',
    'tls_key',
    'tls_ca',
  ])
    if (values[key] === '') delete values[key];
  if (values.etcd_endpoints !== undefined && values.master_address !== undefined) {
    throw new ConfigError(
      `${source}:${lineOf.master_address}: key "master_address" cannot be set with etcd_endpoints ` +
        `(line ${lineOf.etcd_endpoints}): in cluster mode etcd elects the master`,
    );
  }
  const config = plainToInstance(ImsConfig, values, { enableImplicitConversion: false });
  config.kefu_appid = values.kefu_appid as bigint;
  // Cluster mode promises that any in-sync replica may win an election without losing an acknowledged
  // save; that needs at least one replica's copy before an acknowledgement. A one-node shard says 0.
  if (config.clusterMode && !('min_insync_replicas' in values)) config.min_insync_replicas = 1;
  config.source = source;
  const errors = validateSync(config, { forbidUnknownValues: false });
  if (errors.length > 0) {
    const e = errors[0];
    const msg = Object.values(e.constraints ?? {})[0] ?? 'is invalid';
    const where = lineOf[e.property] ? `${source}:${lineOf[e.property]}` : source;
    throw new ConfigError(`${where}: key "${e.property}": ${msg} (got "${String(e.value)}")`);
  }
  const at = (key: string) => (lineOf[key] ? `${source}:${lineOf[key]}` : source);
  // The host:port pattern allows five digits; a port above 65535 would only fail at listen(), after
  // storage was opened. 0 (the kernel picks) is for listeners only: nothing can connect to port 0.
  for (const [key, min] of [
    ['rpc_listen', 0],
    ['sync_listen', 0],
    ['http_listen_address', 0],
    ['gorpc_listen', 0],
    ['netrpc_listen', 0],
    ['master_address', 1],
  ] as const) {
    const value = config[key];
    if (value === undefined) continue;
    const { port } = parseHostPort(value);
    if (port < min || port > 65535)
      throw new ConfigError(
        `${at(key)}: key "${key}": port ${port} is out of range (${min}-65535) (got "${value}")`,
      );
  }
  for (const endpoint of config.etcd_endpoints?.split(',') ?? []) {
    const port = Number(/:(\d+)\s*$/.exec(endpoint)?.[1]);
    if (port < 1 || port > 65535)
      throw new ConfigError(
        `${at('etcd_endpoints')}: key "etcd_endpoints": port ${port} of ${endpoint.trim()} is out of range (1-65535)`,
      );
  }
  if (config.max_pending_bytes < config.max_frame_bytes)
    throw new ConfigError(
      `${at('max_pending_bytes')}: key "max_pending_bytes": ${config.max_pending_bytes} is below ` +
        `max_frame_bytes (${config.max_frame_bytes}); a frame of the largest allowed size could never arrive`,
    );
  if (config.hard_limit !== 0 && config.hard_limit < 2 * config.limit)
    throw new ConfigError(
      `${at('hard_limit')}: key "hard_limit": ${config.hard_limit} must be 0 (no limit) or at least ` +
        `twice limit (${config.limit}), so a whole page always fits under it`,
    );
  if (!!config.tls_cert !== !!config.tls_key) {
    const missing = config.tls_cert ? 'tls_key' : 'tls_cert';
    const given = config.tls_cert ? 'tls_cert' : 'tls_key';
    throw new ConfigError(`${at(given)}: key "${given}" is set but "${missing}" is not; TLS needs both`);
  }
  if (config.tls_ca && !config.tls_cert)
    throw new ConfigError(
      `${at('tls_ca')}: key "tls_ca" needs tls_cert and tls_key (mutual TLS: this server presents its own certificate too)`,
    );
  return config;
}

export function loadConfigFile(file: string): ImsConfig {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`);
  }
  const config = parseConfigText(text, file);
  resolvePaths(config, text, file);
  return config;
}

/**
 * Relative paths in a config file (storage_root, tls_cert, tls_key, tls_ca) are relative to the file's
 * folder, as in most servers' configs: where the server is started from does not change which folder
 * it serves. Go ims resolved storage_root against its working directory, so a Go config moved over as
 * is could silently point ims at a new, empty folder: when the working directory's reading holds a data
 * folder and the config-relative one does not, start-up stops and asks for an absolute path.
 */
function resolvePaths(config: ImsConfig, text: string, file: string): void {
  const base = path.dirname(path.resolve(file));
  const root = config.storage_root;
  if (!path.isAbsolute(root)) {
    const resolved = path.resolve(base, root);
    const fromCwd = path.resolve(root);
    if (resolved !== fromCwd && !holdsBlocks(resolved) && holdsBlocks(fromCwd)) {
      throw new ConfigError(
        `${file}:${lineOfKey(text, 'storage_root')}: key "storage_root": "${root}" is relative to the ` +
          `config file's folder and names ${resolved}, which holds no data, while ${fromCwd} (the same ` +
          `path from the working directory, where Go ims looked) holds a data folder: write the ` +
          `absolute path of the folder to serve`,
      );
    }
    config.storageRootSetting = root;
    config.storage_root = resolved;
  }
  for (const key of ['tls_cert', 'tls_key', 'tls_ca'] as const) {
    const value = config[key];
    if (value !== undefined && !path.isAbsolute(value)) config[key] = path.resolve(base, value);
  }
}

/** A data folder: it has block files (not necessarily message_0: retention deletes from the front). */
function holdsBlocks(dir: string): boolean {
  try {
    return fs.readdirSync(dir).some((name) => /^message_\d+$/.test(name));
  } catch {
    return false;
  }
}

function lineOfKey(text: string, key: string): number {
  return text.split(/\r?\n/).findIndex((l) => new RegExp(`^\\s*${key}\\s*=`).test(l)) + 1;
}
