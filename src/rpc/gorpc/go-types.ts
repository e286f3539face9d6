/**
 * The Go types on a gorpc connection to ims: gorpc's envelopes and dispatcher structs, and the request
 * and reply structs of Go ims (im_service `storage_rpc.go`), with Go's names, field order and types.
 * The ids are those a Go process gives them when it first sends them in this order, so a fresh
 * connection's bytes match Go's.
 */
import {
  GoBasic,
  GobError,
  Local,
  type Decoded,
  type GoInterfaceValue,
  type GoType,
  type LocalType,
} from '../gob/gob.js';
import {
  goSlice,
  goStruct as struct,
  historyList,
  historyMessageList,
  decodedPayload,
  requestStruct,
  type ImsRequestName,
  type Payload,
  type RequestStruct,
  type WireMessageLike,
} from '../gob/go-structs.js';

export type { Payload };

const int = GoBasic.int;

// --- server → client ---------------------------------------------------------------------------------

export const WireResponse = struct(65, 'wireResponse', [
  ['ID', GoBasic.uint],
  ['Response', GoBasic.interface],
  ['Error', GoBasic.string],
]);
export const DispatcherResponse = struct(66, 'dispatcherResponse', [
  ['Response', GoBasic.interface],
  ['Error', GoBasic.string],
]);
export const HistoryMessageList = historyMessageList(69, 68, 'main');
export const PeerHistoryMessage = struct(67, 'PeerHistoryMessage', [
  ['Messages', HistoryMessageList],
  ['LastMsgID', int],
]);
export const GroupHistoryMessage = struct(70, 'GroupHistoryMessage', [
  ['Messages', HistoryMessageList],
  ['LastMsgID', int],
]);
export const Int64List = goSlice(71, '[]int64', int);

/** Interface type names a client registers (what a server's replies may name). */
export const REPLY_NAMES: ReadonlySet<string> = new Set([
  '*gorpc.dispatcherResponse',
  'int64',
  '*main.PeerHistoryMessage',
  '*main.GroupHistoryMessage',
  '[]*main.HistoryMessage',
  '[]int64',
]);

// --- client → server ---------------------------------------------------------------------------------

export const WireRequest = struct(65, 'wireRequest', [
  ['ID', GoBasic.uint],
  ['Request', GoBasic.interface],
]);
export const DispatcherRequest = struct(66, 'dispatcherRequest', [
  ['Request', GoBasic.interface],
  ['Name', GoBasic.string],
]);

type RequestType = RequestStruct;

/** Go ims 2.0's request structs are in package main; Go registers a pointer to each. */
const requestType = (id: number, name: ImsRequestName, int64s?: GoType): RequestType =>
  requestStruct(id, name, `*main.${name}`, int64s);

const PeerMessage = requestType(67, 'PeerMessage');
const GroupMessage = requestType(68, 'GroupMessage');
const SyncHistory = requestType(69, 'SyncHistory');
const SyncGroupHistory = requestType(70, 'SyncGroupHistory');
const HistoryRequest = requestType(71, 'HistoryRequest');
const PeerGroupMessage = requestType(72, 'PeerGroupMessage', goSlice(73, '[]int64', int));

/** A Nest handler's reply turned into the Go value the Go method returns. */
type ReplyToGo = (reply: unknown) => GoInterfaceValue;

export interface GorpcMethod {
  /** The Nest pattern, also the Go function name (called as ".Name"). */
  pattern: string;
  request: RequestType;
  reply: ReplyToGo;
}

const int64Reply = (n: number) => ({ name: 'int64', type: int, value: n });

const syncReply =
  (name: string, type: GoType): ReplyToGo =>
  (r) => {
    const reply = r as { messages: WireMessageLike[]; lastMsgId: number };
    return { name, type, value: { Messages: historyList(reply.messages), LastMsgID: reply.lastMsgId } };
  };

/** The Go ims methods gorpc callers use, by Go function name. */
export const GORPC_METHODS: ReadonlyMap<string, GorpcMethod> = new Map(
  (
    [
      {
        pattern: 'SavePeerMessage',
        request: PeerMessage,
        reply: (r) => int64Reply((r as { msgId: number }).msgId),
      },
      {
        pattern: 'SaveGroupMessage',
        request: GroupMessage,
        reply: (r) => int64Reply((r as { msgId: number }).msgId),
      },
      {
        pattern: 'SavePeerGroupMessage',
        request: PeerGroupMessage,
        // Go im expects msgid, prev_msgid for each member in turn.
        reply: (r) => ({
          name: '[]int64',
          type: Int64List,
          value: (r as { messageIds: { msgId: number; prevMsgId: number }[] }).messageIds.flatMap((s) => [
            s.msgId,
            s.prevMsgId,
          ]),
        }),
      },
      {
        pattern: 'SyncMessage',
        request: SyncHistory,
        reply: syncReply('*main.PeerHistoryMessage', PeerHistoryMessage),
      },
      {
        pattern: 'SyncGroupMessage',
        request: SyncGroupHistory,
        reply: syncReply('*main.GroupHistoryMessage', GroupHistoryMessage),
      },
      {
        pattern: 'GetNewCount',
        request: SyncHistory,
        reply: (r) => int64Reply((r as { count: number }).count),
      },
      {
        pattern: 'GetLatestMessage',
        request: HistoryRequest,
        reply: (r) => ({
          name: '[]*main.HistoryMessage',
          type: HistoryMessageList,
          value: historyList((r as { messages: WireMessageLike[] }).messages),
        }),
      },
    ] satisfies GorpcMethod[]
  ).map((m) => [m.pattern, m]),
);

/** Interface type names ims registers as a server: gorpc's dispatcher request and every request struct. */
export const REQUEST_NAMES: ReadonlySet<string> = new Set([
  '*gorpc.dispatcherRequest',
  ...[...GORPC_METHODS.values()].map((m) => m.request.goName),
]);

export const REQUEST_TYPES: readonly RequestType[] = [
  PeerMessage,
  GroupMessage,
  SyncHistory,
  SyncGroupHistory,
  HistoryRequest,
  PeerGroupMessage,
];

/**
 * gorpc's wireRequest{ID, Request: *dispatcherRequest{Request, Name}} as the server decodes it. Both
 * interfaces take every type ims registers (as Go's gob registry does): which one a method wants is the
 * dispatcher's check, answered, not the decoder's.
 */
const registered = new Map<string, LocalType>();
const anyRequest: LocalType = { kind: 'interface', types: registered };
const DISPATCHER_REQUEST_LOCAL: LocalType = {
  kind: 'struct',
  name: 'dispatcherRequest',
  fields: new Map<string, LocalType>([
    ['Request', anyRequest],
    ['Name', Local.string],
  ]),
};
registered.set('*gorpc.dispatcherRequest', DISPATCHER_REQUEST_LOCAL);
for (const t of REQUEST_TYPES) registered.set(t.goName, t.local);

export const WIRE_REQUEST_LOCAL: LocalType = {
  kind: 'struct',
  name: 'wireRequest',
  fields: new Map<string, LocalType>([
    ['ID', Local.uint],
    ['Request', anyRequest],
  ]),
};

/** One decoded gorpc request: its id, the Go function name it calls and the interface value it carries. */
export interface GorpcCall {
  id: number | bigint;
  name: string;
  request: { name: string; value: Decoded } | null;
}

type Iface = { name: string; value: Decoded } | null | undefined;

/** A value decoded into WIRE_REQUEST_LOCAL as the call it makes; GobError when it is not a dispatcher call. */
export function toGorpcCall(v: Decoded): GorpcCall {
  const wire = v as { ID?: number | bigint; Request?: Iface };
  const env = wire.Request;
  if (!env || env.name !== '*gorpc.dispatcherRequest')
    throw new GobError(`wireRequest.Request is ${env?.name ?? '<nil>'}, not a *gorpc.dispatcherRequest`);
  const inner = env.value as { Request?: Iface; Name?: string };
  return { id: wire.ID ?? 0, name: inner.Name ?? '', request: inner.Request ?? null };
}

/**
 * The Nest payload for a request struct of `method`'s Go type, as Go's decoder would fill the struct:
 * absent fields are zero, a value out of its field's range refused (GobError).
 */
export function toPayload(method: GorpcMethod, value: Decoded): Payload {
  return decodedPayload(method.request, value);
}
