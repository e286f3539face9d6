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
export {
  decodeBody,
  encodeBody,
  ImsBodyError,
  MessageCmd,
  type BodyCmd,
  type BodyFields,
  type BodyFieldsByCmd,
  type BodyFieldsFor,
  type BodyInput,
  type BodyInputByCmd,
  type BodyInputFor,
  type CustomerFields,
  type CustomerFieldsInput,
  type ImFields,
  type ImFieldsInput,
  type TextFields,
  type TextFieldsInput,
  type TextInput,
} from './bodies.js';
export * from './wire.js';
export { ImsClusterClient, type ImsClusterClientOptions } from './ims-cluster-client.js';
export { refusalKind, type RefusalKind } from '../format/refusals.js';
