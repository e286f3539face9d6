/** The typed configuration of one ims process, validated with class-validator. */
import { IsIn, IsInt, IsOptional, IsString, Matches, Max, Min, MinLength } from 'class-validator';
import { BLOCK_SIZE } from '../format/constants.js';
import type { QueueFormatName } from '../format/index-file.js';

/** host:port, where an empty host (":13333") means every interface. */
export const HOST_PORT = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]*):(\d{1,5})$/;

/** An advertised address: host:port with a host (a node cannot be reached at "every interface"). */
const ADVERTISED = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$/;
const PEER_ADDRESS = '[A-Za-z0-9_.:-]+=(\\[[0-9a-fA-F:.]+\\]|[A-Za-z0-9_.-]+):\\d{1,5}';
/** node=host:port[,node=host:port…] (node names as node_name allows them). */
const PEER_ADDRESSES = new RegExp(`^\\s*${PEER_ADDRESS}\\s*(,\\s*${PEER_ADDRESS}\\s*)*$`);

export type Durability = 'sync' | 'interval';

/**
 * The largest legal RPC request is a SavePeerMessages of 1000 items, each a 32767-byte body in base64
 * (43,692 characters) plus about 110 characters of ids, cmd and JSON punctuation: 43.8 MB. 48 MiB leaves
 * room for the packet envelope and ids written as 20-digit strings.
 */
export const DEFAULT_MAX_FRAME_BYTES = 48 * 1024 * 1024;

export class ImsConfig {
  /** Path of the file this came from (for messages). */
  source = '';

  /** storage_root as the file wrote it, when it was relative (resolved against the file's folder). */
  storageRootSetting?: string;

  @Matches(HOST_PORT, { message: 'rpc_listen must be host:port' })
  rpc_listen: string;

  @IsString()
  @MinLength(1)
  storage_root: string;

  @Matches(HOST_PORT, { message: 'sync_listen must be host:port' })
  sync_listen: string;

  kefu_appid: bigint;

  @IsOptional()
  @Matches(HOST_PORT, { message: 'master_address must be host:port' })
  master_address?: string;

  @IsOptional()
  @Matches(HOST_PORT, { message: 'http_listen_address must be host:port' })
  http_listen_address?: string;

  /** Also serve the RPC methods over gorpc (what Go im servers speak) on this address. */
  @IsOptional()
  @Matches(HOST_PORT, { message: 'gorpc_listen must be host:port' })
  gorpc_listen?: string;

  /** Also serve the RPC methods over Go's net/rpc (what the newest Go im servers speak) on this address. */
  @IsOptional()
  @Matches(HOST_PORT, { message: 'netrpc_listen must be host:port' })
  netrpc_listen?: string;

  @IsInt()
  @Min(1, { message: 'limit must be at least 1' })
  limit = 3000;

  @IsInt()
  @Min(0, { message: 'group_limit must not be negative' })
  group_limit = 0;

  /**
   * v4 folders: a user's backlog beyond this many messages is sent one-to-one messages first (Go's
   * hard_limit; 0: no limit). Must be 0 or at least twice `limit`.
   */
  @IsInt()
  @Min(0, { message: 'hard_limit must not be negative' })
  hard_limit = 0;

  /**
   * The queue format: v2 (Go ims 2.0) or v4 (the newest GoBelieve store). Unset: what the folder holds,
   * v2 for a new folder. A setting the folder contradicts stops start-up.
   */
  @IsOptional()
  @IsIn(['v2', 'v4'], { message: 'queue_format must be v2 or v4' })
  queue_format?: QueueFormatName;

  @IsInt()
  @IsIn([0, 1], { message: 'is_push_system must be 0 or 1' })
  is_push_system = 0;

  /** sync: acknowledge a save after the fdatasync that covers it; interval: at once, fsync every second (Go). */
  @IsIn(['sync', 'interval'], { message: 'durability must be sync or interval' })
  durability: Durability = 'sync';

  /** Save the index files when the log has grown by this many blocks since the last save (Go: 2). */
  @IsInt()
  @Min(1, { message: 'index_save_blocks must be at least 1' })
  index_save_blocks = 2;

  /** Readiness fails when the storage folder's file system has less free space than this. */
  @IsInt()
  @Min(0, { message: 'min_free_disk_mb must not be negative' })
  min_free_disk_mb = 256;

  /** Block size in bytes. Only tests change it: ids depend on it, so a folder keeps the size it was written with. */
  @IsInt()
  @Min(65536, { message: 'block_size must be at least 65536' })
  @Max(BLOCK_SIZE, { message: `block_size must be at most ${BLOCK_SIZE}` })
  block_size = BLOCK_SIZE;

  /**
   * A save is acknowledged once it is durable here and on at least this many in-sync replicas (ims
   * slaves that acknowledge). 0: acknowledged after the local fsync alone, as Go does. Cluster mode
   * defaults to 1 (a one-node shard must say 0, and then acknowledged saves can be lost on failover).
   */
  @IsInt()
  @Min(0, { message: 'min_insync_replicas must not be negative' })
  @Max(16, { message: 'min_insync_replicas must be at most 16' })
  min_insync_replicas = 0;

  /** A replica that has not acknowledged a record this long after it was written leaves the in-sync set. */
  @IsInt()
  @Min(100, { message: 'replica_lag_timeout_ms must be at least 100' })
  replica_lag_timeout_ms = 5000;

  /** An idle master tells ims slaves its log end this often (they can then tell idle from stalled). */
  @IsInt()
  @Min(50, { message: 'sync_heartbeat_ms must be at least 50' })
  sync_heartbeat_ms = 500;

  /** A slave that reads nothing for this long while a batch waits for it is dropped. */
  @IsInt()
  @Min(100, { message: 'sync_stall_timeout_ms must be at least 100' })
  sync_stall_timeout_ms = 30_000;

  /** A live slave more than this many bytes behind the log end is dropped (0: four blocks). */
  @IsInt()
  @Min(0, { message: 'sync_max_live_lag_bytes must not be negative' })
  sync_max_live_lag_bytes = 0;

  /** Go slaves' live writes wait at most this long to be batched (Go: 1000). */
  @IsInt()
  @Min(0, { message: 'sync_live_batch_delay_ms must not be negative' })
  sync_live_batch_delay_ms = 1000;

  /** Cluster mode: comma-separated etcd host:port list; etcd elects each shard's master. */
  @IsOptional()
  @Matches(/^\s*[^,\s]+:\d{1,5}\s*(,\s*[^,\s]+:\d{1,5}\s*)*$/, {
    message: 'etcd_endpoints must be host:port[,host:port…]',
  })
  etcd_endpoints?: string;

  /** The etcd key prefix of this cluster. */
  @Matches(/^[A-Za-z0-9_.-]+$/, { message: 'cluster_name must be letters, digits, _ . -' })
  cluster_name = 'ims';

  /** This node's shard (cluster mode). */
  @IsInt()
  @Min(0, { message: 'shard must not be negative' })
  shard = 0;

  /**
   * This node's one identity in its shard (registration, in-sync set, slave identification). Default:
   * the name the data folder was first joined under, else `<hostname>:<rpc port>`; recorded in the
   * folder, so that the in-sync set names data, not a process.
   */
  @IsOptional()
  @Matches(/^[A-Za-z0-9_.:-]+$/, { message: 'node_name must be letters, digits, _ . : -' })
  node_name?: string;

  /** The host other nodes and clients use to reach this one (default: the listen host). */
  @IsOptional()
  @Matches(/^[A-Za-z0-9_.:[\]-]+$/, { message: 'advertise_host must be a host name or address' })
  advertise_host?: string;

  /**
   * Full host:port other nodes and clients reach this node's RPC, sync and HTTP listeners at, published
   * in etcd instead of the bound address (NAT, a proxy); each overrides advertise_host for its listener.
   */
  @IsOptional()
  @Matches(ADVERTISED, { message: 'advertise_rpc must be host:port (with a host)' })
  advertise_rpc?: string;

  @IsOptional()
  @Matches(ADVERTISED, { message: 'advertise_sync must be host:port (with a host)' })
  advertise_sync?: string;

  @IsOptional()
  @Matches(ADVERTISED, { message: 'advertise_http must be host:port (with a host)' })
  advertise_http?: string;

  /**
   * `node=host:port,…`: how this node reaches a peer's sync listener when that differs from what the
   * peer advertises (NAT, a proxy per link). A peer not listed is reached at its advertised address.
   */
  @IsOptional()
  @Matches(PEER_ADDRESSES, { message: 'peer_sync_addresses must be node=host:port[,node=host:port…]' })
  peer_sync_addresses?: string;

  /** peer_sync_addresses as a map from node name to host:port. */
  get peerSyncAddresses(): Map<string, string> {
    const out = new Map<string, string>();
    for (const item of (this.peer_sync_addresses ?? '').split(',')) {
      const eq = item.indexOf('=');
      if (eq > 0) out.set(item.slice(0, eq).trim(), item.slice(eq + 1).trim());
    }
    return out;
  }

  get clusterMode(): boolean {
    return !!this.etcd_endpoints;
  }

  /**
   * Longest frame a connection may send on the RPC port (the JSON text's length). The default holds the
   * largest legal request, a SavePeerMessages of 1000 bodies of 32 KiB (README "Bounded input").
   */
  @IsInt()
  @Min(65536, { message: 'max_frame_bytes must be at least 65536 (one SavePeerMessage of a 32 KiB body)' })
  max_frame_bytes = DEFAULT_MAX_FRAME_BYTES;

  /** Bytes held for unfinished frames across all connections; past it the largest holders are dropped. */
  @IsInt()
  @Min(65536, { message: 'max_pending_bytes must be at least 65536' })
  max_pending_bytes = 256 * 1024 * 1024;

  /** An unfinished frame that receives nothing for this long is dropped with its connection. */
  @IsInt()
  @Min(100, { message: 'incomplete_frame_timeout_ms must be at least 100' })
  incomplete_frame_timeout_ms = 30_000;

  /**
   * Checked reads: a record a read verified within the last `checksum_recheck_s` to twice that many
   * seconds is served without computing its CRC again; 0 checks every read (README "Checked reads").
   */
  @IsInt()
  @Min(0, { message: 'checksum_recheck_s must be 0 (every read checked) or more' })
  checksum_recheck_s = 30;

  /** Connections each listener (RPC, sync, gorpc, netrpc) accepts at once; beyond it new ones are refused. */
  @IsInt()
  @Min(1, { message: 'max_connections must be at least 1' })
  max_connections = 10_000;

  /** PEM certificate chain: with tls_key, the RPC, sync, gorpc and netrpc listeners serve TLS. */
  @IsOptional()
  @IsString()
  tls_cert?: string;

  /** PEM private key of tls_cert. */
  @IsOptional()
  @IsString()
  tls_key?: string;

  /** PEM CA bundle: clients (and slaves) must present a certificate signed by it (mutual TLS). */
  @IsOptional()
  @IsString()
  tls_ca?: string;

  /** Delete a sealed block once its newest record is older than this many hours (0: kept for ever). */
  @IsInt()
  @Min(0, { message: 'retention_hours must not be negative' })
  retention_hours = 0;

  /** Delete the oldest sealed blocks while the sealed blocks together exceed this many bytes (0: no limit). */
  @IsInt()
  @Min(0, { message: 'retention_bytes must not be negative' })
  retention_bytes = 0;

  get isSlave(): boolean {
    return !!this.master_address;
  }
}

/** Splits host:port; an empty host means every interface. */
export function parseHostPort(value: string): { host: string | undefined; port: number } {
  const m = HOST_PORT.exec(value);
  if (!m) throw new Error(`not host:port: ${value}`);
  const host = m[1].replace(/^\[|\]$/g, '');
  return { host: host === '' ? undefined : host, port: Number(m[2]) };
}
