/** On-disk and on-wire constants shared with Go ims 2.0 data folders and replication streams. */

export const MAGIC = 0x494d494d;
export const BLOCK_SIZE = 128 * 1024 * 1024;
export const BLOCK_HEADER_SIZE = 32;
export const BLOCK_VERSION = 1 << 16;
/** 12-byte message header: length int32, seq int32, cmd u8, version u8, flag u8, pad u8. */
export const MESSAGE_HEADER_SIZE = 12;
/** Record = MAGIC + header + body + MAGIC. */
export const RECORD_OVERHEAD = 4 + MESSAGE_HEADER_SIZE + 4;
/** Go reads records with a 32 KiB limit (`length >= 32768` is refused), so no larger body is ever stored. */
export const MAX_BODY_SIZE = 32 * 1024 - 1;
/** Go slaves refuse sync frames of 32 MiB or more. */
export const MAX_SYNC_FRAME_BODY = 32 * 1024 * 1024 - 1;

export const DEFAULT_MESSAGE_VERSION = 1;

export const Cmd = {
  IM: 4,
  ACK: 5,
  GROUP_NOTIFICATION: 7,
  GROUP_IM: 8,
  SYSTEM: 21,
  CUSTOMER: 24,
  CUSTOMER_SUPPORT: 25,
  NOTIFICATION: 36,
  CUSTOMER_V2: 64,
  STORAGE_SYNC_BEGIN: 220,
  STORAGE_SYNC_MESSAGE: 221,
  STORAGE_SYNC_MESSAGE_BATCH: 222,
  // ims extensions of the sync link, sent only to a peer that asked for them (Go never sees them).
  STORAGE_SYNC_HELLO: 230,
  STORAGE_SYNC_ACK: 231,
  STORAGE_SYNC_HEARTBEAT: 232,
  STORAGE_SYNC_IDENT: 233,
  STORAGE_SYNC_RETAINED_FROM: 234,
  // Queue records of the newest GoBelieve store (queue_format v4).
  GROUP_OFFLINE: 247,
  OFFLINE_V4: 248,
  OFFLINE_V3: 249,
  OFFLINE_V2: 250,
  PENDING_GROUP_MESSAGE: 251,
  GROUP_IM_LIST: 252,
  GROUP_ACK_IN: 253,
  OFFLINE: 254,
  ACK_IN: 255,
} as const;

export const MESSAGE_FLAG_GROUP = 0x04;

const CMD_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(Cmd).map(([name, value]) => [value, `MSG_${name}`]),
);

export function cmdName(cmd: number): string {
  return CMD_NAMES[cmd] ?? `cmd ${cmd}`;
}

/** Message kinds SyncMessage returns (Go: LoadHistoryMessages). */
export const SYNC_CMDS: ReadonlySet<number> = new Set([
  Cmd.IM,
  Cmd.GROUP_IM,
  Cmd.GROUP_NOTIFICATION,
  Cmd.CUSTOMER,
  Cmd.CUSTOMER_SUPPORT,
  Cmd.SYSTEM,
]);

/** Message kinds GetLatestMessage returns: as SyncMessage without MSG_SYSTEM. */
export const LATEST_CMDS: ReadonlySet<number> = new Set([
  Cmd.IM,
  Cmd.GROUP_IM,
  Cmd.GROUP_NOTIFICATION,
  Cmd.CUSTOMER,
  Cmd.CUSTOMER_SUPPORT,
]);

/** Newest GoBelieve (v4): SyncMessage returns these kinds (CustomerMessageV2 replaced 24/25). */
export const V4_SYNC_CMDS: ReadonlySet<number> = new Set([
  Cmd.IM,
  Cmd.GROUP_IM,
  Cmd.GROUP_NOTIFICATION,
  Cmd.CUSTOMER_V2,
  Cmd.SYSTEM,
]);

/** Newest GoBelieve (v4): GetLatestMessage returns these (no MSG_SYSTEM). */
export const V4_LATEST_CMDS: ReadonlySet<number> = new Set([
  Cmd.IM,
  Cmd.GROUP_IM,
  Cmd.GROUP_NOTIFICATION,
  Cmd.CUSTOMER_V2,
]);

/** v4 queues: every BATCH_SIZE-th entry of a queue is a batch mark, chained to the one before. */
export const QUEUE_BATCH_SIZE = 1000;

/** The message record version the newest GoBelieve writes (its IMMessage layout is v1's). */
export const V4_MESSAGE_VERSION = 2;

/** SyncGroupMessage returns at most this many messages (Go: GROUP_OFFLINE_LIMIT). */
export const GROUP_SYNC_LIMIT = 100;
