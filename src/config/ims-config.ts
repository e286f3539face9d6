/** The typed configuration of one ims process, validated with class-validator. */
import { IsIn, IsInt, IsOptional, IsString, Matches, Max, Min, MinLength } from 'class-validator';
import { BLOCK_SIZE } from '../format/constants.js';

/** host:port, where an empty host (":13333") means every interface. */
export const HOST_PORT = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]*):(\d{1,5})$/;

export type Durability = 'sync' | 'interval';

export class ImsConfig {
  /** Path of the file this came from (for messages). */
  source = '';

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

  @IsInt()
  @Min(1, { message: 'limit must be at least 1' })
  limit = 3000;

  @IsInt()
  @Min(0, { message: 'group_limit must not be negative' })
  group_limit = 0;

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
