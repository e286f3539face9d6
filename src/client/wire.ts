/**
 * The RPC wire contract shared by the ims server and its client: pattern names and the JSON shapes that
 * travel over the Nest TCP transport. 64-bit ids are JSON numbers when safe, decimal strings otherwise;
 * raw message bodies are base64.
 */

export const RpcPattern = {
  SavePeerMessage: 'SavePeerMessage',
  /** Several SavePeerMessage payloads in one packet (ImsClient batches concurrent saves this way). */
  SavePeerMessages: 'SavePeerMessages',
  SaveGroupMessage: 'SaveGroupMessage',
  SavePeerGroupMessage: 'SavePeerGroupMessage',
  SyncMessage: 'SyncMessage',
  SyncGroupMessage: 'SyncGroupMessage',
  GetNewCount: 'GetNewCount',
  GetLatestMessage: 'GetLatestMessage',
  Ping: 'Ping',
} as const;

export type RpcPatternName = (typeof RpcPattern)[keyof typeof RpcPattern];

/** A 64-bit id on the wire. */
export type WireInt64 = number | string;

export interface WireHistoryMessage {
  msgId: number;
  deviceId: WireInt64;
  cmd: number;
  /** base64 */
  raw: string;
}

export interface WireSaveReply {
  msgId: number;
  prevMsgId: number;
}

/** One item of a SavePeerMessages reply: the save's ids, or why that one payload was refused. */
export type WireSaveOutcome = WireSaveReply | { error: string };

export interface WireSavePeerMessagesReply {
  /** In the order of the request's `messages`. */
  results: WireSaveOutcome[];
}

export interface WireSyncReply {
  messages: WireHistoryMessage[];
  lastMsgId: number;
  hasMore: boolean;
}

export interface WireSavePeerGroupReply {
  messageIds: WireSaveReply[];
}

export interface WireNewCountReply {
  count: number;
}

export interface WireLatestReply {
  messages: WireHistoryMessage[];
}

export interface WirePingReply {
  pong: true;
}

/** What the server sends back for a refused request (Nest's RPC error packet `err`). */
export interface WireError {
  status: 'error';
  message: string;
}
