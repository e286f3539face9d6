/**
 * What the two Go transports (gorpc, net/rpc) share about Go ims's structs: how a struct type is
 * described to the encoder, how a decoded request struct becomes the payload the Nest handlers take, and
 * how the handlers' messages become Go `HistoryMessage` values. Go ims 2.0 (`main` package, gorpc) and
 * the newest (`storage` package, net/rpc) declare the same request structs; their type ids, package and
 * reply structs differ, so each transport lists its own types with these helpers.
 */
import { GoBasic, GobError, Local, type Decoded, type GoType, type LocalType } from './gob.js';

export type StructType = Extract<GoType, { kind: 'struct' }>;

/** A Go struct type with the id this side gives it, its name and its fields in Go's order. */
export const goStruct = (id: number, name: string, fields: [string, GoType][]): StructType => ({
  kind: 'struct',
  id,
  name,
  fields: fields.map(([n, type]) => ({ name: n, type })),
});

/** A Go slice type with the id this side gives it (slices are user types in gob). */
export const goSlice = (id: number, name: string, elem: GoType): GoType => ({
  kind: 'slice',
  id,
  name,
  elem,
});

/** How a request field is typed in Go. */
export type FieldKind = 'int64' | 'int32' | 'bytes' | 'int64s';

/** Go ims's request structs, alike in 2.0 and the newest: each field's Go type, in Go's order. */
const IMS_REQUESTS = {
  PeerMessage: { AppID: 'int64', Uid: 'int64', DeviceID: 'int64', Cmd: 'int32', Raw: 'bytes' },
  PeerGroupMessage: { AppID: 'int64', Members: 'int64s', DeviceID: 'int64', Cmd: 'int32', Raw: 'bytes' },
  GroupMessage: { AppID: 'int64', GroupID: 'int64', DeviceID: 'int64', Cmd: 'int32', Raw: 'bytes' },
  SyncHistory: { AppID: 'int64', Uid: 'int64', DeviceID: 'int64', LastMsgID: 'int64' },
  SyncGroupHistory: {
    AppID: 'int64',
    Uid: 'int64',
    DeviceID: 'int64',
    GroupID: 'int64',
    LastMsgID: 'int64',
    Timestamp: 'int32',
  },
  HistoryRequest: { AppID: 'int64', Uid: 'int64', Limit: 'int32' },
} as const satisfies Record<string, Record<string, FieldKind>>;
export type ImsRequestName = keyof typeof IMS_REQUESTS;

/** The Nest payload key of each request field, whatever the struct. */
const PAYLOAD_KEYS: Record<string, string> = {
  AppID: 'appId',
  Uid: 'uid',
  DeviceID: 'deviceId',
  GroupID: 'groupId',
  Members: 'members',
  Cmd: 'cmd',
  Raw: 'raw',
  LastMsgID: 'lastMsgId',
  Timestamp: 'timestamp',
  Limit: 'limit',
};

/** A Go request struct: the name Go reports it by, its encoder type, each field's Go type and payload key. */
export interface RequestStruct {
  goName: string;
  type: StructType;
  fields: Record<string, FieldKind>;
  payloadKeys: Record<string, string>;
  /** The struct as the receiver decodes it (type-directed decoding). */
  local: Extract<LocalType, { kind: 'struct' }>;
}

const INT64S: LocalType = { kind: 'slice', name: '[]int64', elem: Local.int };
const localKind = (k: FieldKind): LocalType =>
  k === 'bytes' ? Local.bytes : k === 'int64s' ? INT64S : Local.int;

/**
 * Describes Go ims's request struct `name`. `int64s` is the `[]int64` type the sender gives an id of its
 * own, needed only when a field is `int64s`.
 */
export function requestStruct(
  id: number,
  name: ImsRequestName,
  goName: string,
  int64s?: GoType,
): RequestStruct {
  const fields: Record<string, FieldKind> = IMS_REQUESTS[name];
  const goType = (k: FieldKind): GoType =>
    k === 'bytes' ? GoBasic.bytes : k === 'int64s' ? int64s! : GoBasic.int;
  return {
    goName,
    type: goStruct(
      id,
      name,
      Object.entries(fields).map(([f, k]) => [f, goType(k)]),
    ),
    fields,
    payloadKeys: Object.fromEntries(Object.keys(fields).map((f) => [f, PAYLOAD_KEYS[f]])),
    local: {
      kind: 'struct',
      name,
      fields: new Map(Object.entries(fields).map(([f, k]) => [f, localKind(k)])),
    },
  };
}

/** A decoded request as the Nest handler takes it (the same payload the Nest transport carries). */
export type Payload = Record<string, unknown>;

/**
 * The Nest payload for a request struct decoded into `request.local` (fields the sender left out are
 * zero). The decoder has checked every field's type; what is left is Go's int32 range (GobError).
 */
export function decodedPayload(request: RequestStruct, value: Decoded): Payload {
  const d = value as Record<string, Decoded | undefined>;
  const out: Payload = {};
  for (const field in request.fields) {
    const kind = request.fields[field];
    const key = request.payloadKeys[field];
    const v = d[field];
    switch (kind) {
      case 'int64':
        out[key] = v === undefined ? 0 : typeof v === 'bigint' ? v.toString() : v;
        break;
      case 'int32':
        if (v !== undefined && (typeof v !== 'number' || v < INT32_MIN_N || v > INT32_MAX_N))
          throw new GobError(`${request.goName}.${field}: ${v as number | bigint} out of int32 range`);
        out[key] = v ?? 0;
        break;
      case 'bytes':
        out[key] = v === undefined ? '' : (v as Buffer).toString('base64');
        break;
      case 'int64s':
        out[key] =
          v === undefined
            ? []
            : (v as (number | bigint)[]).map((x) => (typeof x === 'bigint' ? x.toString() : x));
        break;
    }
  }
  return out;
}

/** The first int32 field of a decoded request out of Go's int32 range, if any. */
export function int32OutOfRange(request: RequestStruct, value: Decoded): string | undefined {
  const d = value as Record<string, Decoded | undefined>;
  for (const field in request.fields) {
    if (request.fields[field] !== 'int32') continue;
    const v = d[field];
    if (v !== undefined && (typeof v !== 'number' || v < INT32_MIN_N || v > INT32_MAX_N)) return field;
  }
  return undefined;
}

const INT32_MIN_N = -(2 ** 31);
const INT32_MAX_N = 2 ** 31 - 1;

/**
 * `[]*HistoryMessage` of Go package `pkg`: its element (a pointer) has no name, so Go sends that struct
 * unnamed.
 */
export const historyMessageList = (id: number, elemId: number, pkg: string): GoType =>
  goSlice(
    id,
    `[]*${pkg}.HistoryMessage`,
    goStruct(elemId, '', [
      ['MsgID', GoBasic.int],
      ['DeviceID', GoBasic.int],
      ['Cmd', GoBasic.int],
      ['Raw', GoBasic.bytes],
    ]),
  );

/** A message as the Nest handlers answer it (client/wire.ts WireHistoryMessage). */
export interface WireMessageLike {
  msgId: number;
  deviceId: number | string;
  cmd: number;
  raw: string;
}

/** The Go `HistoryMessage{MsgID, DeviceID, Cmd, Raw}` values of the handlers' messages, in their order. */
export const historyList = (messages: WireMessageLike[]) =>
  messages.map((m) => ({
    MsgID: m.msgId,
    DeviceID: typeof m.deviceId === 'string' ? BigInt(m.deviceId) : m.deviceId,
    Cmd: m.cmd,
    Raw: Buffer.from(m.raw, 'base64'),
  }));
