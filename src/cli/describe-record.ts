/** Records decoded for people: cmd names, ids, chain pointers, and text bodies shown as text. */
import { Cmd, MESSAGE_FLAG_GROUP, cmdName } from '../format/constants.js';
import { decodeCustomerBody, decodeGroupEntry, decodeImBody, decodeOfflineEntry } from '../format/bodies.js';
import { int64ToJson } from '../format/int64.js';
import type { RawMessage } from '../format/record.js';

export type FieldValue = number | string | boolean;

export interface DecodedRecord {
  id: number;
  /** `message_N` and the offset in it. */
  file: string;
  offset: number;
  cmd: number;
  cmdName: string;
  seq: number;
  version: number;
  flag: number;
  bodyBytes: number;
  fields: Record<string, FieldValue>;
  /** The body's text, when the kind carries text and it is valid UTF-8. */
  text?: string;
  /** Hex of bodies (or contents) that are not text; at most the first 256 bytes. */
  hex?: string;
}

const HEX_LIMIT = 256;

function textOrHex(content: Buffer): { text?: string; hex?: string } {
  const text = content.toString('utf8');
  if (Buffer.from(text, 'utf8').equals(content)) return { text };
  return { hex: content.subarray(0, HEX_LIMIT).toString('hex') + (content.length > HEX_LIMIT ? '…' : '') };
}

function time(seconds: number): string {
  return seconds > 0 ? new Date(seconds * 1000).toISOString() : String(seconds);
}

export function decodeRecordForPeople(
  id: number,
  file: string,
  offset: number,
  msg: RawMessage,
): DecodedRecord {
  const out: DecodedRecord = {
    id,
    file,
    offset,
    cmd: msg.cmd,
    cmdName: cmdName(msg.cmd),
    seq: msg.seq,
    version: msg.version,
    flag: msg.flag,
    bodyBytes: msg.body.length,
    fields: {},
  };
  const body = msg.body;
  switch (msg.cmd) {
    case Cmd.IM:
    case Cmd.GROUP_IM: {
      const im = decodeImBody(body, msg.version);
      if (!im) break;
      out.fields = {
        sender: int64ToJson(im.sender),
        receiver: int64ToJson(im.receiver),
        timestamp: im.timestamp,
        time: time(im.timestamp),
        clientMsgid: im.msgid,
      };
      return { ...out, ...textOrHex(im.content) };
    }
    case Cmd.CUSTOMER:
    case Cmd.CUSTOMER_SUPPORT: {
      const c = decodeCustomerBody(body);
      if (!c) break;
      out.fields = {
        customerAppid: int64ToJson(c.customerAppid),
        customerId: int64ToJson(c.customerId),
        storeId: int64ToJson(c.storeId),
        sellerId: int64ToJson(c.sellerId),
        timestamp: c.timestamp,
        time: time(c.timestamp),
      };
      return { ...out, ...textOrHex(c.content) };
    }
    case Cmd.GROUP_NOTIFICATION:
    case Cmd.SYSTEM:
    case Cmd.NOTIFICATION:
      return { ...out, ...textOrHex(body) };
    case Cmd.OFFLINE:
    case Cmd.OFFLINE_V2: {
      const e = decodeOfflineEntry(msg.cmd, body);
      if (!e) break;
      out.fields = {
        appid: int64ToJson(e.appid),
        uid: int64ToJson(e.receiver),
        msgid: e.msgid,
        deviceId: int64ToJson(e.deviceId),
        prevMsgid: e.prevMsgid,
        prevPeerMsgid: e.prevPeerMsgid,
        group: (msg.flag & MESSAGE_FLAG_GROUP) !== 0,
      };
      return out;
    }
    case Cmd.GROUP_IM_LIST: {
      const e = decodeGroupEntry(body);
      if (!e) break;
      out.fields = {
        appid: int64ToJson(e.appid),
        gid: int64ToJson(e.gid),
        msgid: e.msgid,
        deviceId: int64ToJson(e.deviceId),
        prevMsgid: e.prevMsgid,
      };
      return out;
    }
  }
  // Unknown kinds and bodies too short for their kind: show the bytes.
  out.hex = body.subarray(0, HEX_LIMIT).toString('hex') + (body.length > HEX_LIMIT ? '…' : '');
  return out;
}

/** One or two lines of text for a decoded record. */
export function formatRecord(r: DecodedRecord, indent = ''): string {
  const head =
    `${indent}#${r.id} ${r.cmdName} (${r.file} offset ${r.offset}, ${r.bodyBytes} body bytes` +
    `${r.version !== 0 ? `, v${r.version}` : ''}${r.flag !== 0 ? `, flag 0x${r.flag.toString(16)}` : ''}${r.seq !== 0 ? `, seq ${r.seq}` : ''})`;
  const fields = Object.entries(r.fields)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
  const lines = [head];
  if (fields) lines.push(`${indent}  ${fields}`);
  if (r.text !== undefined) lines.push(`${indent}  text: ${JSON.stringify(r.text)}`);
  if (r.hex !== undefined) lines.push(`${indent}  hex: ${r.hex}`);
  return lines.join('\n');
}
