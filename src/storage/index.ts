export { MessageStore } from './message-store.js';
export type {
  HistoryMessage,
  MessageStoreOptions,
  OpenReport,
  SaveResult,
  SyncResult,
} from './message-store.js';
export {
  CorruptRecordError,
  StorageInputError,
  StorageOpenError,
  StorageWriteError,
} from './storage-errors.js';
export { DataDirLockedError } from './data-dir-lock.js';
export type { LogTruncation } from './log-truncation.js';
export { EpochHistory, type EpochEntry } from './epoch-history.js';
export {
  IMPLICIT_EPOCH,
  commonEpoch,
  divergence,
  divergencePoint,
  endOfEpoch,
  mergeFollowerHistory,
  startOfEpoch,
  trimHistory,
  type Divergence,
  type LogRelation,
} from './epochs.js';
export { StorageModule } from './storage.module.js';
export { StorageService, type StorageStatus } from './storage.service.js';
