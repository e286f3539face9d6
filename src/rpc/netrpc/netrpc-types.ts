/**
 * The Go types on a net/rpc connection to ims: net/rpc's `Request`/`Response` headers and the argument
 * and reply structs of the newest Go ims (im_service 4fa4897, package `storage`, file `storage/rpc.go`),
 * with Go's names, field order and types; the `RPCStorage` service's eight methods; and the checks Go's
 * gob decoder makes before it fills a struct, so that a well-formed argument of the wrong type gets the
 * error string a Go server would send.
 *
 * Type ids: a Go process numbers its types in the order it first encodes them. The ids below are the
 * ones Go's server and client gave them in the captured conversation (test/fixtures/go-ims-newest/small/
 * wire), one call of each method in the order of calls.json, so a fresh connection making the same calls
 * gets Go's bytes. Any other order is still a valid gob stream: a receiver learns ids from the stream.
 */
import {
  BUILTIN_NAMES,
  GoBasic,
  Local,
  TypeId,
  type Decoded,
  type GoType,
  type LocalType,
  type WireType,
} from '../gob/gob.js';
import {
  decodedPayload,
  goSlice,
  int32OutOfRange,
  goStruct,
  historyList,
  historyMessageList,
  requestStruct,
  type ImsRequestName,
  type Payload,
  type RequestStruct,
  type WireMessageLike,
} from '../gob/go-structs.js';

const int = GoBasic.int;

/** The service name Go ims registers (`rpc.Register(new(RPCStorage))`). */
export const SERVICE = 'RPCStorage';

// --- server → client ---------------------------------------------------------------------------------

/** net/rpc's response header, sent before every reply body. */
export const Response = goStruct(65, 'Response', [
  ['ServiceMethod', GoBasic.string],
  ['Seq', GoBasic.uint],
  ['Error', GoBasic.string],
]);
/** The reply of SavePeerMessage and SaveGroupMessage. */
export const HistoryMessageID = goStruct(66, 'HistoryMessageID', [
  ['MsgID', int],
  ['PrevMsgID', int],
]);
const HistoryMessageIDList = goSlice(68, '[]*storage.HistoryMessageID', HistoryMessageID);
/** The reply of SavePeerGroupMessage: one id pair per member, in Members order. */
export const GroupHistoryMessageID = goStruct(67, 'GroupHistoryMessageID', [
  ['MessageIDs', HistoryMessageIDList],
]);
const HistoryMessageList = historyMessageList(71, 70, 'storage');
export const PeerHistoryMessage = goStruct(69, 'PeerHistoryMessage', [
  ['Messages', HistoryMessageList],
  ['LastMsgID', int],
  ['HasMore', GoBasic.bool],
]);
/** `type GroupHistoryMessage PeerHistoryMessage`: a type of its own, with its own id and name. */
export const GroupHistoryMessage = goStruct(72, 'GroupHistoryMessage', [
  ['Messages', HistoryMessageList],
  ['LastMsgID', int],
  ['HasMore', GoBasic.bool],
]);
export const LatestMessage = goStruct(73, 'LatestMessage', [['Messages', HistoryMessageList]]);
/**
 * The body Go's server sends after a response header that carries an error (net/rpc's
 * `invalidRequest = struct{}{}`). Its id depends on when a Go process first sent one; the capture has
 * none, so it takes the next free id.
 */
export const InvalidRequest = goStruct(74, '', []);

// --- client → server ---------------------------------------------------------------------------------

/** net/rpc's request header, sent before every argument. */
export const Request = goStruct(65, 'Request', [
  ['ServiceMethod', GoBasic.string],
  ['Seq', GoBasic.uint],
]);

/** The newest Go ims's argument structs are in package storage (Go names them storage.X in errors). */
const arg = (id: number, name: ImsRequestName, int64s?: GoType): MethodArg => ({
  kind: 'struct',
  request: requestStruct(id, name, `storage.${name}`, int64s),
});

const PeerMessage = arg(66, 'PeerMessage');
const PeerGroupMessage = arg(67, 'PeerGroupMessage', goSlice(68, '[]int64', int));
const GroupMessage = arg(69, 'GroupMessage');
const SyncHistory = arg(70, 'SyncHistory');
const SyncGroupHistory = arg(71, 'SyncGroupHistory');
const HistoryRequest = arg(72, 'HistoryRequest');

// --- the service ---------------------------------------------------------------------------------------

/** A method's argument: one of the structs above, or Ping's plain `int`. */
export type MethodArg = { kind: 'struct'; request: RequestStruct } | { kind: 'int' };

/** A reply body: its Go type and value. */
export interface GoReply {
  type: GoType;
  value: unknown;
}

export interface NetrpcMethod {
  /** The Go method name (called as "RPCStorage.Name"), also the Nest pattern. */
  pattern: string;
  arg: MethodArg;
  /** The Nest handler's reply as the Go reply struct. */
  reply: (reply: unknown) => GoReply;
}

interface SaveReply {
  msgId: number;
  prevMsgId: number;
}
interface SyncReply {
  messages: WireMessageLike[];
  lastMsgId: number;
  hasMore: boolean;
}

const idPair = (r: SaveReply) => ({ MsgID: r.msgId, PrevMsgID: r.prevMsgId });
const saveReply = (r: unknown): GoReply => ({ type: HistoryMessageID, value: idPair(r as SaveReply) });
const syncReply =
  (type: GoType) =>
  (r: unknown): GoReply => {
    const s = r as SyncReply;
    return {
      type,
      value: { Messages: historyList(s.messages), LastMsgID: s.lastMsgId, HasMore: s.hasMore },
    };
  };

/** RPCStorage's methods, by Go method name. */
export const NETRPC_METHODS: ReadonlyMap<string, NetrpcMethod> = new Map(
  (
    [
      {
        pattern: 'SyncMessage',
        arg: SyncHistory,
        reply: syncReply(PeerHistoryMessage),
      },
      {
        pattern: 'SyncGroupMessage',
        arg: SyncGroupHistory,
        reply: syncReply(GroupHistoryMessage),
      },
      {
        pattern: 'SavePeerMessage',
        arg: PeerMessage,
        reply: saveReply,
      },
      {
        pattern: 'SavePeerGroupMessage',
        arg: PeerGroupMessage,
        reply: (r) => ({
          type: GroupHistoryMessageID,
          value: { MessageIDs: (r as { messageIds: SaveReply[] }).messageIds.map(idPair) },
        }),
      },
      {
        pattern: 'SaveGroupMessage',
        arg: GroupMessage,
        reply: saveReply,
      },
      {
        pattern: 'GetNewCount',
        arg: SyncHistory,
        reply: (r) => ({ type: int, value: (r as { count: number }).count }),
      },
      {
        pattern: 'GetLatestMessage',
        arg: HistoryRequest,
        reply: (r) => ({
          type: LatestMessage,
          value: { Messages: historyList((r as { messages: WireMessageLike[] }).messages) },
        }),
      },
      // Go's Ping(int, *int) leaves its reply at 0.
      { pattern: 'Ping', arg: { kind: 'int' }, reply: () => ({ type: int, value: 0 }) },
    ] satisfies NetrpcMethod[]
  ).map((m) => [m.pattern, m]),
);

/** The Go type a client encodes a method's argument with. */
export const argType = (m: NetrpcMethod): GoType => (m.arg.kind === 'int' ? int : m.arg.request.type);

/**
 * The method a request header names, or the error Go's server answers it with (the argument that
 * follows is then read and dropped). Go splits at the last dot: "A.B.C" is method C of service "A.B".
 */
export function lookupMethod(serviceMethod: string): NetrpcMethod | string {
  const dot = serviceMethod.lastIndexOf('.');
  if (dot < 0) return `rpc: service/method request ill-formed: ${serviceMethod}`;
  if (serviceMethod.slice(0, dot) !== SERVICE) return `rpc: can't find service ${serviceMethod}`;
  return NETRPC_METHODS.get(serviceMethod.slice(dot + 1)) ?? `rpc: can't find method ${serviceMethod}`;
}

// --- Go's decoder's type checks ----------------------------------------------------------------------

/** The Go type of a field or value on the receiving side. */
type LocalKind = 'int64' | 'int32' | 'int' | 'uint64' | 'string' | 'bytes' | 'int64s';

/** How Go's reflect spells each (its error messages name local types so). */
const GO_SPELLING: Record<LocalKind, string> = {
  int64: 'int64',
  int32: 'int32',
  int: 'int',
  uint64: 'uint64',
  string: 'string',
  bytes: '[]uint8',
  int64s: '[]int64',
};

/** A struct the receiver decodes into: its qualified name (storage.PeerMessage) and its fields. */
export interface LocalStruct {
  goName: string;
  fields: Record<string, LocalKind>;
}

/** Reads the sender's type definitions (the decoder's, for this stream). */
export type TypeDefs = (id: number) => WireType | undefined;

const typeString = (id: number, defs: TypeDefs): string =>
  BUILTIN_NAMES[id] ?? defs(id)?.name ?? 'unknown type';

/** Whether Go decodes a value sent as type `id` into a local `kind` (gob's compatibility rules). */
function compatible(kind: LocalKind, id: number, defs: TypeDefs): boolean {
  switch (kind) {
    case 'int64':
    case 'int32':
    case 'int':
      return id === TypeId.int;
    case 'uint64':
      return id === TypeId.uint;
    case 'string':
      return id === TypeId.string;
    case 'bytes':
      return id === TypeId.bytes;
    case 'int64s': {
      const t = defs(id);
      return t?.kind === 'slice' && t.elem === TypeId.int;
    }
  }
}

/**
 * Why Go's decoder would refuse to decode a value sent as type `id` into `local`, in Go's words; null
 * when it decodes. Go checks the sender's definition of the type (not the value): a field of the wrong
 * type is an error even when this value leaves it out. Fields the struct lacks are skipped, and a struct
 * sharing no field with the local one is refused.
 */
export function structTypeError(local: LocalStruct, id: number, defs: TypeDefs): string | null {
  const def = defs(id);
  if (def?.kind !== 'struct')
    return `gob: type mismatch in decoder: want struct type ${local.goName}; got non-struct`;
  let matched = 0;
  for (const f of def.fields) {
    if (f.name === '') return `gob: empty name for remote field of type ${def.name}`;
    if (!Object.hasOwn(local.fields, f.name)) continue;
    const kind = local.fields[f.name];
    if (!compatible(kind, f.id, defs))
      return `gob: wrong type (${GO_SPELLING[kind]}) for received field ${def.name}.${f.name}`;
    matched++;
  }
  const shortName = local.goName.slice(local.goName.lastIndexOf('.') + 1);
  if (matched === 0 && Object.keys(local.fields).length > 0 && def.fields.length > 0)
    return `gob: type mismatch: no fields matched compiling decoder for ${shortName}`;
  return null;
}

/** The same for a method argument: Ping's `int` is decoded through a pointer, which Go names `*int`. */
export function argTypeError(m: NetrpcMethod, id: number, defs: TypeDefs): string | null {
  if (m.arg.kind === 'int')
    return id === TypeId.int
      ? null
      : `gob: decoding into local type *int, received remote type ${typeString(id, defs)}`;
  return structTypeError(m.arg.request, id, defs);
}

/** What a method's argument is decoded into, once argTypeError found nothing wrong. */
export const argLocal = (m: NetrpcMethod): LocalType =>
  m.arg.kind === 'int' ? Local.int : m.arg.request.local;

/** Go's error for a decoded argument whose value does not fit its field (an int32 out of range). */
export function argValueError(m: NetrpcMethod, value: Decoded): string | null {
  if (m.arg.kind === 'int') return null;
  const field = int32OutOfRange(m.arg.request, value);
  return field === undefined ? null : `value for "${field}" out of range`;
}

/** The Nest payload of a decoded argument. */
export const argPayload = (m: NetrpcMethod, value: Decoded): Payload =>
  m.arg.kind === 'int' ? {} : decodedPayload(m.arg.request, value);

/** net/rpc's request header, as the server decodes it. */
const REQUEST_HEADER: LocalStruct = {
  goName: 'rpc.Request',
  fields: { ServiceMethod: 'string', Seq: 'uint64' },
};

export const REQUEST_HEADER_LOCAL: LocalType = {
  kind: 'struct',
  name: 'Request',
  fields: new Map<string, LocalType>([
    ['ServiceMethod', Local.string],
    ['Seq', Local.uint],
  ]),
};

export interface RequestHeader {
  serviceMethod: string;
  seq: number | bigint;
}

/** Why Go's server cannot read a value sent as type `id` as its request header (it then closes). */
export function headerTypeError(id: number, defs: TypeDefs): string | null {
  const err = structTypeError(REQUEST_HEADER, id, defs);
  return err && `rpc: server cannot decode request: ${err}`;
}

/** A value decoded into REQUEST_HEADER_LOCAL. */
export function toRequestHeader(value: Decoded): RequestHeader {
  const h = value as { ServiceMethod?: string; Seq?: number | bigint };
  return { serviceMethod: h.ServiceMethod ?? '', seq: h.Seq ?? 0 };
}
