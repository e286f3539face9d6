/** Bodies of the message kinds ims stores or reads (Go 2.0 layouts, big-endian). Pure functions. */
import { isUtf8 } from 'node:buffer';
import { Cmd, MAX_BODY_SIZE } from './constants.js';
import { readId, writeId } from './int64.js';

export interface ImBody {
  sender: bigint;
  receiver: bigint;
  timestamp: number;
  msgid: number;
  content: Buffer;
}

export interface CustomerBody {
  customerAppid: bigint;
  customerId: bigint;
  storeId: bigint;
  sellerId: bigint;
  timestamp: number;
  content: Buffer;
}

/** A user's queue entry: MSG_OFFLINE_V2 (and the older MSG_OFFLINE, read as one with prevPeerMsgid = prevMsgid). */
export interface OfflineEntry {
  appid: bigint;
  receiver: bigint;
  msgid: number;
  deviceId: bigint;
  prevMsgid: number;
  prevPeerMsgid: number;
}

/** A super-group's queue entry: MSG_GROUP_IM_LIST. */
export interface GroupEntry {
  appid: bigint;
  receiver: bigint;
  msgid: number;
  gid: bigint;
  deviceId: bigint;
  prevMsgid: number;
}

export const OFFLINE_V2_BODY_SIZE = 48;
export const GROUP_ENTRY_BODY_SIZE = 48;

export function decodeImBody(body: Buffer, version: number): ImBody | null {
  if (version === 0) {
    if (body.length < 20) return null;
    return {
      sender: body.readBigInt64BE(0),
      receiver: body.readBigInt64BE(8),
      timestamp: 0,
      msgid: body.readInt32BE(16),
      content: body.subarray(20),
    };
  }
  if (body.length < 24) return null;
  return {
    sender: body.readBigInt64BE(0),
    receiver: body.readBigInt64BE(8),
    timestamp: body.readInt32BE(16),
    msgid: body.readInt32BE(20),
    content: body.subarray(24),
  };
}

export function encodeImBody(im: ImBody): Buffer {
  const buf = Buffer.allocUnsafe(24 + im.content.length);
  buf.writeBigInt64BE(im.sender, 0);
  buf.writeBigInt64BE(im.receiver, 8);
  buf.writeInt32BE(im.timestamp, 16);
  buf.writeInt32BE(im.msgid, 20);
  im.content.copy(buf, 24);
  return buf;
}

export function decodeCustomerBody(body: Buffer): CustomerBody | null {
  if (body.length < 36) return null;
  return {
    customerAppid: body.readBigInt64BE(0),
    customerId: body.readBigInt64BE(8),
    storeId: body.readBigInt64BE(16),
    sellerId: body.readBigInt64BE(24),
    timestamp: body.readInt32BE(32),
    content: body.subarray(36),
  };
}

export function encodeCustomerBody(c: CustomerBody): Buffer {
  const buf = Buffer.allocUnsafe(36 + c.content.length);
  buf.writeBigInt64BE(c.customerAppid, 0);
  buf.writeBigInt64BE(c.customerId, 8);
  buf.writeBigInt64BE(c.storeId, 16);
  buf.writeBigInt64BE(c.sellerId, 24);
  buf.writeInt32BE(c.timestamp, 32);
  c.content.copy(buf, 36);
  return buf;
}

/** Decodes MSG_OFFLINE_V2 (48 bytes) or the old MSG_OFFLINE (32 or 40 bytes). Null when malformed. */
export function decodeOfflineEntry(cmd: number, body: Buffer): OfflineEntry | null {
  if (cmd === Cmd.OFFLINE_V2) {
    if (body.length < 48) return null;
    return {
      appid: body.readBigInt64BE(0),
      receiver: body.readBigInt64BE(8),
      msgid: readId(body, 16),
      deviceId: body.readBigInt64BE(24),
      prevMsgid: readId(body, 32),
      prevPeerMsgid: readId(body, 40),
    };
  }
  if (cmd === Cmd.OFFLINE) {
    if (body.length < 32) return null;
    const withDevice = body.length === 40;
    const prev = readId(body, withDevice ? 32 : 24);
    return {
      appid: body.readBigInt64BE(0),
      receiver: body.readBigInt64BE(8),
      msgid: readId(body, 16),
      deviceId: withDevice ? body.readBigInt64BE(24) : 0n,
      prevMsgid: prev,
      prevPeerMsgid: prev,
    };
  }
  return null;
}

/** Writes a 48-byte MSG_OFFLINE_V2 body at `offset`. */
export function writeOfflineV2Body(
  target: Buffer,
  offset: number,
  appid: bigint,
  receiver: bigint,
  msgid: number,
  deviceId: bigint,
  prevMsgid: number,
  prevPeerMsgid: number,
): void {
  target.writeBigInt64BE(appid, offset);
  target.writeBigInt64BE(receiver, offset + 8);
  writeId(target, msgid, offset + 16);
  target.writeBigInt64BE(deviceId, offset + 24);
  writeId(target, prevMsgid, offset + 32);
  writeId(target, prevPeerMsgid, offset + 40);
}

export function encodeOfflineEntry(e: OfflineEntry): Buffer {
  const buf = Buffer.allocUnsafe(OFFLINE_V2_BODY_SIZE);
  writeOfflineV2Body(buf, 0, e.appid, e.receiver, e.msgid, e.deviceId, e.prevMsgid, e.prevPeerMsgid);
  return buf;
}

/** Decodes MSG_GROUP_IM_LIST: 48 bytes, or the older 40-byte form without device_id. */
export function decodeGroupEntry(body: Buffer): GroupEntry | null {
  if (body.length < 40) return null;
  const withDevice = body.length === 48;
  return {
    appid: body.readBigInt64BE(0),
    receiver: body.readBigInt64BE(8),
    msgid: readId(body, 16),
    gid: body.readBigInt64BE(24),
    deviceId: withDevice ? body.readBigInt64BE(32) : 0n,
    prevMsgid: readId(body, withDevice ? 40 : 32),
  };
}

/** Writes a 48-byte MSG_GROUP_IM_LIST body at `offset` (receiver is always 0). */
export function writeGroupEntryBody(
  target: Buffer,
  offset: number,
  appid: bigint,
  msgid: number,
  gid: bigint,
  deviceId: bigint,
  prevMsgid: number,
): void {
  target.writeBigInt64BE(appid, offset);
  target.writeBigInt64BE(0n, offset + 8);
  writeId(target, msgid, offset + 16);
  target.writeBigInt64BE(gid, offset + 24);
  target.writeBigInt64BE(deviceId, offset + 32);
  writeId(target, prevMsgid, offset + 40);
}

export function encodeGroupEntry(e: Omit<GroupEntry, 'receiver'>): Buffer {
  const buf = Buffer.allocUnsafe(GROUP_ENTRY_BODY_SIZE);
  writeGroupEntryBody(buf, 0, e.appid, e.msgid, e.gid, e.deviceId, e.prevMsgid);
  return buf;
}

/**
 * The raw body a client receives for a stored message: Go re-encodes it at version 1, so an old
 * version-0 IM body gains a zero timestamp. Every other body is returned as stored.
 */
export function replyBody(cmd: number, version: number, body: Buffer): Buffer {
  if ((cmd === Cmd.IM || cmd === Cmd.GROUP_IM) && version === 0) {
    const im = decodeImBody(body, 0);
    if (im) return encodeImBody(im);
  }
  return body;
}

/** How a stored message kind's body is laid out: an IMMessage, a CustomerMessage, or bare UTF-8 text. */
export type BodyLayout = 'im' | 'customer' | 'text';

export interface StoredBodyRule {
  layout: BodyLayout;
  /** Fewest bytes a body of this kind has (its fixed header). */
  min: number;
  what: string;
}

const IM_RULE: StoredBodyRule = {
  layout: 'im',
  min: 24,
  what: 'an IMMessage (sender, receiver, timestamp, msgid: 24 bytes, then content)',
};
const CUSTOMER_RULE: StoredBodyRule = {
  layout: 'customer',
  min: 36,
  what: 'a CustomerMessage (4 ids and a timestamp: 36 bytes, then content)',
};

/** Body kinds a client may save, with what each must hold. */
const SAVE_BODY_RULES: Record<number, StoredBodyRule> = {
  [Cmd.IM]: IM_RULE,
  [Cmd.GROUP_IM]: IM_RULE,
  [Cmd.GROUP_NOTIFICATION]: { layout: 'text', min: 0, what: 'notification text' },
  [Cmd.SYSTEM]: { layout: 'text', min: 0, what: 'system text' },
  [Cmd.NOTIFICATION]: { layout: 'text', min: 0, what: 'notification text' },
  [Cmd.CUSTOMER]: CUSTOMER_RULE,
  [Cmd.CUSTOMER_SUPPORT]: CUSTOMER_RULE,
};

/**
 * Body kinds a client may save in a v4 (newest GoBelieve) folder: what its SyncMessage returns.
 * CustomerMessageV2 (64): sender_appid, sender, receiver_appid, receiver, timestamp, then content.
 */
const V4_SAVE_BODY_RULES: Record<number, StoredBodyRule> = {
  [Cmd.IM]: IM_RULE,
  [Cmd.GROUP_IM]: IM_RULE,
  [Cmd.GROUP_NOTIFICATION]: { layout: 'text', min: 0, what: 'notification text' },
  [Cmd.SYSTEM]: { layout: 'text', min: 0, what: 'system text' },
  [Cmd.CUSTOMER_V2]: {
    layout: 'customer',
    min: 36,
    what: 'a CustomerMessageV2 (sender appid, sender, receiver appid, receiver, timestamp: 36 bytes, then content)',
  },
};

/** The message kinds ims stores, ascending. */
export const STORED_BODY_CMDS: readonly number[] = Object.keys(SAVE_BODY_RULES)
  .map(Number)
  .sort((a, b) => a - b);

/** The layout of a stored message kind's body, or undefined when ims does not store `cmd`. */
export function storedBodyRule(cmd: number): StoredBodyRule | undefined {
  return Object.hasOwn(SAVE_BODY_RULES, cmd) ? SAVE_BODY_RULES[cmd] : undefined;
}

/** Why `body` cannot be stored as `cmd` in a folder of `format`, or null when it can. */
export function saveBodyProblem(cmd: number, body: Buffer, format: 'v2' | 'v4' = 'v2'): string | null {
  const rules = format === 'v4' ? V4_SAVE_BODY_RULES : SAVE_BODY_RULES;
  const rule = Object.hasOwn(rules, cmd) ? rules[cmd] : undefined;
  if (!rule) {
    const kinds = Object.keys(rules).join(', ');
    return `cmd ${cmd} is not a message kind ims stores in a ${format} folder (kinds: ${kinds})`;
  }
  if (body.length > MAX_BODY_SIZE) return `body is ${body.length} bytes; the limit is ${MAX_BODY_SIZE}`;
  if (body.length < rule.min)
    return `body of ${body.length} bytes is too short for cmd ${cmd}: expected ${rule.what}`;
  return null;
}

/**
 * Why `body` cannot be stored as `cmd` in a folder of either format, or null: what an RPC layer can
 * check before it knows the folder (the engine then checks the folder's own kinds).
 */
export function anyFormatBodyProblem(cmd: number, body: Buffer): string | null {
  const v2 = saveBodyProblem(cmd, body, 'v2');
  if (v2 === null || Object.hasOwn(SAVE_BODY_RULES, cmd)) return v2;
  return Object.hasOwn(V4_SAVE_BODY_RULES, cmd) ? saveBodyProblem(cmd, body, 'v4') : v2;
}

/** A text body (MSG_GROUP_NOTIFICATION, MSG_SYSTEM, MSG_NOTIFICATION) is the UTF-8 text, no header. */
export function encodeTextBody(text: string | Uint8Array): Buffer {
  return typeof text === 'string' ? Buffer.from(text, 'utf8') : Buffer.from(text);
}

/**
 * Text of a body or of a message's content, or null when the bytes are not valid UTF-8: a lenient decode
 * would turn them into U+FFFD and re-encoding would then change the stored bytes.
 */
export function decodeUtf8(bytes: Uint8Array): string | null {
  if (!isUtf8(bytes)) return null;
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
}
