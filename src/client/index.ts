/** The ims client package: a typed RPC client for IM servers and the wire contract it speaks. */
export {
  ImsClient,
  ImsRpcError,
  ImsTimeoutError,
  type HistoryMessage,
  type ImsClientOptions,
  type Int64Input,
  type SaveReply,
  type SyncReply,
} from './ims-client.js';
export * from './wire.js';
