/** Records decoded for people: cmd names, ids, chain pointers, and text bodies shown as text. */
import { Cmd, cmdName } from '../format/constants.js';
import { decodeCustomerBody, decodeImBody } from '../format/bodies.js';
import { int64ToJson } from '../format/int64.js';
import { V4_QUEUE_CMDS, decodeQueueEntry, isQueueCmd, type QueueEntry } from '../format/queue-entries.js';
import type { RawMessage } from '../format/record.js';
import { isFiller } from '../format/filler.js';

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
  if (isFiller(msg)) {
    // What `ims repair --damaged fill` wrote over damaged bytes: its body is only a note and zeros.
    return { ...out, cmdName: 'FILLER (ims repair --damaged fill; every reader skips it)' };
  }
  if (isQueueCmd(msg.cmd)) {
    const e = decodeQueueEntry(msg.cmd, msg.flag, body);
    if (e) {
      out.fields = queueEntryFields(msg.cmd, e);
      return out;
    }
  }
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
    case Cmd.CUSTOMER_V2: {
      // CustomerMessageV2 (newest GoBelieve): sender appid, sender, receiver appid, receiver, timestamp.
      const c = decodeCustomerBody(body);
      if (!c) break;
      out.fields = {
        senderAppid: int64ToJson(c.customerAppid),
        sender: int64ToJson(c.customerId),
        receiverAppid: int64ToJson(c.storeId),
        receiver: int64ToJson(c.sellerId),
        timestamp: c.timestamp,
        time: time(c.timestamp),
      };
      return { ...out, ...textOrHex(c.content) };
    }
    case Cmd.GROUP_NOTIFICATION:
    case Cmd.SYSTEM:
    case Cmd.NOTIFICATION:
      return { ...out, ...textOrHex(body) };
  }
  // Unknown kinds and bodies too short for their kind: show the bytes.
  out.hex = body.subarray(0, HEX_LIMIT).toString('hex') + (body.length > HEX_LIMIT ? '…' : '');
  return out;
}

/**
 * A queue entry's fields, named as in the format that wrote it: v4 entries (248, 247) add their seq and
 * batch link; group queues have no one-to-one link and user queues mark group messages.
 */
function queueEntryFields(cmd: number, e: QueueEntry): Record<string, FieldValue> {
  const peer = e.family === 'peer';
  const v4 = V4_QUEUE_CMDS.has(cmd);
  return {
    appid: int64ToJson(e.appid),
    [peer ? 'uid' : 'gid']: int64ToJson(e.owner),
    msgid: e.msgid,
    deviceId: int64ToJson(e.deviceId),
    ...(v4 ? { seq: e.seq } : {}),
    prevMsgid: e.prevMsgid,
    ...(peer ? { prevPeerMsgid: e.prevPeerMsgid } : {}),
    ...(v4 ? { prevBatchMsgid: e.prevBatchMsgid } : {}),
    ...(peer ? { group: e.groupFlagged } : {}),
  };
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
