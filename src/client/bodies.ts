/**
 * Message bodies for IM servers: typed fields in, the stored bytes out, and back. The byte layouts are the
 * server's own (src/format/bodies.ts, Go 2.0's); this module only checks what callers pass and names what
 * is wrong.
 */
import { Cmd, MAX_BODY_SIZE } from '../format/constants.js';
import {
  decodeCustomerBody,
  decodeImBody,
  decodeUtf8,
  encodeCustomerBody,
  encodeImBody,
  encodeTextBody,
  saveBodyProblem,
  storedBodyRule,
  STORED_BODY_CMDS,
  type BodyLayout,
  type CustomerBody,
  type ImBody,
  type StoredBodyRule,
} from '../format/bodies.js';
import { INT64_MAX, INT64_MIN } from '../format/int64.js';
import type { Int64Input } from './ims-client.js';

/** The message kinds ims stores, by their Go names (MSG_IM = 4, …). */
export const MessageCmd = {
  IM: Cmd.IM,
  GROUP_NOTIFICATION: Cmd.GROUP_NOTIFICATION,
  GROUP_IM: Cmd.GROUP_IM,
  SYSTEM: Cmd.SYSTEM,
  CUSTOMER: Cmd.CUSTOMER,
  CUSTOMER_SUPPORT: Cmd.CUSTOMER_SUPPORT,
  NOTIFICATION: Cmd.NOTIFICATION,
} as const;

/** Go's IMMessage (cmd 4 MSG_IM, cmd 8 MSG_GROUP_IM), as decoded. */
export interface ImFields {
  sender: bigint;
  receiver: bigint;
  timestamp: number;
  msgid: number;
  content: string;
}

/** Go's CustomerMessage (cmd 24 MSG_CUSTOMER, cmd 25 MSG_CUSTOMER_SUPPORT), as decoded. */
export interface CustomerFields {
  customerAppid: bigint;
  customerId: bigint;
  storeId: bigint;
  sellerId: bigint;
  timestamp: number;
  content: string;
}

/** cmd 7 MSG_GROUP_NOTIFICATION, 21 MSG_SYSTEM, 36 MSG_NOTIFICATION: the body is the text. */
export interface TextFields {
  text: string;
}

/** Text as a caller may give it: a string, or its UTF-8 bytes. */
export type TextInput = string | Uint8Array;

export interface ImFieldsInput {
  sender: Int64Input;
  receiver: Int64Input;
  timestamp: number;
  msgid: number;
  content: TextInput;
}

export interface CustomerFieldsInput {
  customerAppid: Int64Input;
  customerId: Int64Input;
  storeId: Int64Input;
  sellerId: Int64Input;
  timestamp: number;
  content: TextInput;
}

export interface TextFieldsInput {
  text: TextInput;
}

/** What decodeBody returns for each stored cmd. */
export interface BodyFieldsByCmd {
  [Cmd.IM]: ImFields;
  [Cmd.GROUP_NOTIFICATION]: TextFields;
  [Cmd.GROUP_IM]: ImFields;
  [Cmd.SYSTEM]: TextFields;
  [Cmd.CUSTOMER]: CustomerFields;
  [Cmd.CUSTOMER_SUPPORT]: CustomerFields;
  [Cmd.NOTIFICATION]: TextFields;
}

/** What encodeBody takes for each stored cmd. */
export interface BodyInputByCmd {
  [Cmd.IM]: ImFieldsInput;
  [Cmd.GROUP_NOTIFICATION]: TextFieldsInput;
  [Cmd.GROUP_IM]: ImFieldsInput;
  [Cmd.SYSTEM]: TextFieldsInput;
  [Cmd.CUSTOMER]: CustomerFieldsInput;
  [Cmd.CUSTOMER_SUPPORT]: CustomerFieldsInput;
  [Cmd.NOTIFICATION]: TextFieldsInput;
}

export type BodyCmd = keyof BodyFieldsByCmd;
export type BodyFields = BodyFieldsByCmd[BodyCmd];
export type BodyInput = BodyInputByCmd[BodyCmd];

/**
 * The fields of `cmd`: exact for a literal stored cmd, the union for a `number` (e.g. a synced message's
 * cmd), and `never` for a literal cmd ims does not store, so that one fails to compile.
 */
export type BodyFieldsFor<C extends number> = C extends BodyCmd
  ? BodyFieldsByCmd[C]
  : number extends C
    ? BodyFields
    : never;
export type BodyInputFor<C extends number> = C extends BodyCmd
  ? BodyInputByCmd[C]
  : number extends C
    ? BodyInput
    : never;

/** A body that cannot be encoded or decoded; the message names the function, the cmd and the field. */
export class ImsBodyError extends Error {
  constructor(
    readonly cmd: unknown,
    /** The field at fault; undefined when the cmd or the whole body is. */
    readonly field: string | undefined,
    message: string,
  ) {
    super(message);
    this.name = 'ImsBodyError';
  }
}

type FieldKind = 'int64' | 'int32' | 'text';

/** Field order is the byte order of the layout. */
const FIELDS: Record<BodyLayout, readonly (readonly [string, FieldKind])[]> = {
  im: [
    ['sender', 'int64'],
    ['receiver', 'int64'],
    ['timestamp', 'int32'],
    ['msgid', 'int32'],
    ['content', 'text'],
  ],
  customer: [
    ['customerAppid', 'int64'],
    ['customerId', 'int64'],
    ['storeId', 'int64'],
    ['sellerId', 'int64'],
    ['timestamp', 'int32'],
    ['content', 'text'],
  ],
  text: [['text', 'text']],
};

const KIND_TEXT: Record<FieldKind, string> = {
  int64: 'an int64 (bigint, safe integer or decimal string)',
  int32: 'an int32 (an integer from -2147483648 to 2147483647)',
  text: 'a string or Buffer (UTF-8 text)',
};

const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;

/** A short, unambiguous rendering of a bad value for an error message. */
function describe(v: unknown): string {
  if (typeof v === 'bigint') return `${v}n`;
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  if (v === null) return 'null';
  if (Buffer.isBuffer(v)) return `a Buffer of ${v.length} bytes`;
  if (v instanceof Uint8Array) return `a Uint8Array of ${v.length} bytes`;
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'function') return 'a function';
  return String(v as number | boolean | symbol | undefined);
}

const cmdText = (cmd: unknown) => (typeof cmd === 'number' ? String(cmd) : describe(cmd));

function ruleFor(fn: string, cmd: unknown): StoredBodyRule {
  const rule = typeof cmd === 'number' ? storedBodyRule(cmd) : undefined;
  if (!rule)
    throw new ImsBodyError(
      cmd,
      undefined,
      `${fn}(${cmdText(cmd)}): cmd ${cmdText(cmd)} is not a message kind ims stores (${STORED_BODY_CMDS.join(', ')})`,
    );
  return rule;
}

/** String.prototype.isWellFormed (Node 20; not in the ES2023 lib typings). */
const isWellFormed = (s: string) => (s as unknown as { isWellFormed(): boolean }).isWellFormed();

/** The value of one field, or why it is not acceptable (appended to `field "x" …`). */
function convert(kind: FieldKind, v: unknown): bigint | number | Buffer | string {
  const bad = (why = '') => `must be ${KIND_TEXT[kind]}, got ${describe(v)}${why}`;
  if (v === undefined) return `is missing; it must be ${KIND_TEXT[kind]}`;
  switch (kind) {
    case 'int64': {
      let n: bigint;
      if (typeof v === 'bigint') n = v;
      else if (typeof v === 'number') {
        if (!Number.isSafeInteger(v))
          return bad(Number.isInteger(v) ? ' (not a safe integer: pass a bigint or a decimal string)' : '');
        n = BigInt(v);
      } else if (typeof v === 'string' && /^-?\d{1,20}$/.test(v)) n = BigInt(v);
      else return bad();
      return n < INT64_MIN || n > INT64_MAX ? bad(' (outside the int64 range)') : n;
    }
    case 'int32':
      if (typeof v !== 'number' || !Number.isInteger(v)) return bad();
      return v < INT32_MIN || v > INT32_MAX ? bad(' (outside the int32 range)') : v;
    case 'text':
      if (typeof v === 'string') {
        // Buffer.from would turn a lone surrogate into U+FFFD: the stored text would not be the caller's.
        return isWellFormed(v) ? encodeTextBody(v) : bad(' (not well-formed Unicode: a lone surrogate)');
      }
      if (v instanceof Uint8Array)
        return decodeUtf8(v) === null ? bad(' (not valid UTF-8)') : encodeTextBody(v);
      return bad();
  }
}

/**
 * The body bytes of a message of kind `cmd` (4, 7, 8, 21, 24, 25, 36) from its fields, ready for a save's
 * `raw`. int64 fields take a bigint, a safe-integer number or a decimal string; int32 fields a number;
 * `content` and `text` a string or UTF-8 bytes. Throws ImsBodyError naming the cmd and the field for a
 * missing, mistyped, out-of-range or unknown field, an unknown cmd, or a body over ims's 32767-byte limit.
 */
export function encodeBody<C extends number>(cmd: C, fields: BodyInputFor<C>): Buffer;
export function encodeBody(cmd: number, fields: unknown): Buffer {
  const rule = ruleFor('encodeBody', cmd);
  const spec = FIELDS[rule.layout];
  const names = spec.map(([name]) => name);
  const fail = (field: string | undefined, text: string): never => {
    throw new ImsBodyError(cmd, field, `encodeBody(${cmd}): ${text}`);
  };
  if (typeof fields !== 'object' || fields === null || Array.isArray(fields) || fields instanceof Uint8Array)
    fail(undefined, `fields must be an object {${names.join(', ')}}, got ${describe(fields)}`);
  const given = fields as Record<string, unknown>;
  for (const key of Object.keys(given))
    if (!names.includes(key)) fail(key, `unknown field "${key}" (the fields are ${names.join(', ')})`);
  const v: Record<string, bigint | number | Buffer> = {};
  for (const [name, kind] of spec) {
    const value = convert(kind, given[name]);
    if (typeof value === 'string') fail(name, `field "${name}" ${value}`);
    else v[name] = value;
  }
  let body: Buffer;
  if (rule.layout === 'im') body = encodeImBody(v as unknown as ImBody);
  else if (rule.layout === 'customer') body = encodeCustomerBody(v as unknown as CustomerBody);
  else body = v.text as Buffer;
  // The server would refuse it (Go could never read it back); say so before it is sent.
  if (saveBodyProblem(cmd, body) !== null) {
    const field = names[names.length - 1];
    fail(
      field,
      `field "${field}" is too long: the body would be ${body.length} bytes; ims stores at most ${MAX_BODY_SIZE}`,
    );
  }
  return body;
}

/**
 * The fields of a stored message body of kind `cmd` (as a sync or GetLatestMessage returns it in `raw`).
 * int64 fields come back as bigint, int32 fields as number, `content` and `text` as strings. Throws
 * ImsBodyError naming the cmd for an unknown cmd, a body shorter than its layout's header, or content
 * that is not valid UTF-8 (the raw bytes stay usable as they are).
 */
export function decodeBody<C extends number>(cmd: C, raw: Uint8Array): BodyFieldsFor<C>;
export function decodeBody(cmd: number, raw: Uint8Array): BodyFields {
  const rule = ruleFor('decodeBody', cmd);
  const fail = (field: string | undefined, text: string): never => {
    throw new ImsBodyError(cmd, field, `decodeBody(${cmd}): ${text}`);
  };
  if (!(raw instanceof Uint8Array)) return fail(undefined, `raw must be a Buffer, got ${describe(raw)}`);
  const body = Buffer.isBuffer(raw) ? raw : Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  if (body.length < rule.min)
    fail(undefined, `body of ${body.length} bytes is too short: expected ${rule.what}`);
  const text = (field: string, bytes: Buffer): string =>
    decodeUtf8(bytes) ?? fail(field, `field "${field}" is not valid UTF-8 (${bytes.length} bytes)`);
  if (rule.layout === 'im') {
    // Replies always carry version 1 (the server re-encodes old version-0 bodies).
    const im = decodeImBody(body, 1)!;
    return { ...im, content: text('content', im.content) };
  }
  if (rule.layout === 'customer') {
    const c = decodeCustomerBody(body)!;
    return { ...c, content: text('content', c.content) };
  }
  return { text: text('text', body) };
}
