/**
 * Index files of Go ims 2.0: headerless arrays of big-endian int64 fields.
 *   peer_index:  appid, uid, last_id, last_peer_id  (32 bytes an entry)
 *   group_index: appid, gid, last_id                (24 bytes an entry)
 */
export const PEER_INDEX_ENTRY_SIZE = 32;
export const GROUP_INDEX_ENTRY_SIZE = 24;
export const PEER_INDEX_FILE = 'peer_index';
export const GROUP_INDEX_FILE = 'group_index';

/** Why an index file of `size` bytes cannot be a whole number of entries, or null. */
export function indexFileSizeProblem(size: number, entrySize: number): string | null {
  return size % entrySize === 0
    ? null
    : `size ${size} is not a multiple of the ${entrySize}-byte entry (a truncated or foreign file)`;
}
