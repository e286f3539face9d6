/**
 * Index files of both GoBelieve stores: headerless arrays of big-endian int64 fields, a key (appid,
 * uid or gid) then the values.
 *   v2 (Go ims 2.0)  peer_index     (32 bytes): appid, uid, last_id, last_peer_id
 *                    group_index    (24 bytes): appid, gid, last_id
 *   v4 (newest Go)   peer_index.v3  (56 bytes): appid, uid, last_msgid, last_id, last_peer_id,
 *                                               last_batch_id, last_seq_id
 *                    group_index.v2 (48 bytes): appid, gid, last_msgid, last_id, last_batch_id, last_seq_id
 */
export type QueueFormatName = 'v2' | 'v4';
export const QUEUE_FORMATS: readonly QueueFormatName[] = ['v2', 'v4'];

export type IndexKind = 'peer' | 'group';

export interface IndexFileSpec {
  name: string;
  entrySize: number;
  /** Values after the key. */
  values: number;
  /** Which values are log ids (checked against the log end, cleared by retention); the rest are counts. */
  idSlots: readonly number[];
  /** The value holding the queue's newest record (the index files' position in the log). */
  lastIdSlot: number;
}

export const INDEX_FILE_SPECS: Record<QueueFormatName, Record<IndexKind, IndexFileSpec>> = {
  v2: {
    peer: { name: 'peer_index', entrySize: 32, values: 2, idSlots: [0, 1], lastIdSlot: 0 },
    group: { name: 'group_index', entrySize: 24, values: 1, idSlots: [0], lastIdSlot: 0 },
  },
  v4: {
    peer: { name: 'peer_index.v3', entrySize: 56, values: 5, idSlots: [0, 1, 2, 3], lastIdSlot: 1 },
    group: { name: 'group_index.v2', entrySize: 48, values: 4, idSlots: [0, 1, 2], lastIdSlot: 1 },
  },
};

/** Go 2.0's files (the tools' default). */
export const INDEX_FILES = INDEX_FILE_SPECS.v2;
export const PEER_INDEX_FILE = INDEX_FILES.peer.name;
export const GROUP_INDEX_FILE = INDEX_FILES.group.name;
export const PEER_INDEX_ENTRY_SIZE = INDEX_FILES.peer.entrySize;
export const GROUP_INDEX_ENTRY_SIZE = INDEX_FILES.group.entrySize;

/** Every index file name either format uses. */
export const ALL_INDEX_FILE_NAMES: readonly string[] = QUEUE_FORMATS.flatMap((f) => [
  INDEX_FILE_SPECS[f].peer.name,
  INDEX_FILE_SPECS[f].group.name,
]);

/** Why an index file of `size` bytes cannot be a whole number of entries, or null. */
export function indexFileSizeProblem(size: number, entrySize: number): string | null {
  return size % entrySize === 0
    ? null
    : `size ${size} is not a multiple of the ${entrySize}-byte entry (a truncated or foreign file)`;
}
