/**
 * Index files of Go ims 2.0: headerless arrays of big-endian int64 fields.
 *   peer_index:  appid, uid, last_id, last_peer_id  (32 bytes an entry)
 *   group_index: appid, gid, last_id                (24 bytes an entry)
 */
export const PEER_INDEX_ENTRY_SIZE = 32;
export const GROUP_INDEX_ENTRY_SIZE = 24;
export const PEER_INDEX_FILE = 'peer_index';
export const GROUP_INDEX_FILE = 'group_index';

export type IndexKind = 'peer' | 'group';

/** Per kind: the file name, the entry size and how many ids follow the key (last_id[, last_peer_id]). */
export const INDEX_FILES: Record<IndexKind, { name: string; entrySize: number; values: number }> = {
  peer: { name: PEER_INDEX_FILE, entrySize: PEER_INDEX_ENTRY_SIZE, values: 2 },
  group: { name: GROUP_INDEX_FILE, entrySize: GROUP_INDEX_ENTRY_SIZE, values: 1 },
};

/** Why an index file of `size` bytes cannot be a whole number of entries, or null. */
export function indexFileSizeProblem(size: number, entrySize: number): string | null {
  return size % entrySize === 0
    ? null
    : `size ${size} is not a multiple of the ${entrySize}-byte entry (a truncated or foreign file)`;
}
