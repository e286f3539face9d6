/**
 * What the two Go transports (gorpc, net/rpc) share about Go ims's structs: how a struct type is
 * described to the encoder, how a decoded request struct becomes the payload the Nest handlers take, and
 * how the handlers' messages become Go `HistoryMessage` values. Go ims 2.0 (`main` package, gorpc) and
 * the newest (`storage` package, net/rpc) declare the same request structs; their type ids, package and
 * reply structs differ, so each transport lists its own types with these helpers.
 */
import { GoBasic, GobError, GobStruct, type GobValue, type GoType } from './gob.js';

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
}

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
  };
}

/** A decoded request as the Nest handler takes it (the same payload the Nest transport carries). */
export type Payload = Record<string, unknown>;

const INT32_MIN = -(2n ** 31n);
const INT32_MAX = 2n ** 31n - 1n;
const SAFE = BigInt(Number.MAX_SAFE_INTEGER);
/** An int64 as the Nest payloads carry it: a number when exact, else a decimal string. */
export const wireInt64 = (v: bigint): number | string => (v <= SAFE && v >= -SAFE ? Number(v) : v.toString());

/**
 * The Nest payload for a decoded request struct, as Go's decoder would fill the struct: absent fields
 * are zero, unknown ones ignored, a field of the wrong kind or out of its range refused (GobError).
 */
export function toPayload(request: RequestStruct, value: GobValue): Payload {
  if (!(value instanceof GobStruct)) throw new GobError(`${request.goName} is not a struct`);
  const out: Payload = {};
  for (const [field, kind] of Object.entries(request.fields)) {
    const v = value.fields.get(field);
    const key = request.payloadKeys[field];
    const bad = (what: string) => new GobError(`${request.goName}.${field}: ${what}`);
    switch (kind) {
      case 'int64':
      case 'int32': {
        const n = v ?? 0n;
        if (typeof n !== 'bigint') throw bad('not an integer');
        if (kind === 'int32' && (n < INT32_MIN || n > INT32_MAX)) throw bad(`${n} out of int32 range`);
        if (n >= 2n ** 63n) throw bad(`${n} out of int64 range`);
        out[key] = kind === 'int32' ? Number(n) : wireInt64(n);
        break;
      }
      case 'bytes': {
        const b = v ?? Buffer.alloc(0);
        if (!Buffer.isBuffer(b)) throw bad('not a byte string');
        out[key] = b.toString('base64');
        break;
      }
      case 'int64s': {
        const list = v ?? [];
        if (!Array.isArray(list) || list.some((x) => typeof x !== 'bigint'))
          throw bad('not a list of integers');
        out[key] = (list as bigint[]).map(wireInt64);
        break;
      }
    }
  }
  return out;
}

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
