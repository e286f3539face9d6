/**
 * The stable sentences of a refused or unacknowledged save, shared by the server (which sends them) and
 * the client package (which decides from them whether a save may be sent again). Plain text on purpose:
 * the Nest TCP, gorpc and net/rpc wires carry an error as a string, prefixed with the pattern
 * (`SavePeerMessage: not the master of shard 0 (…)`).
 *
 * Two kinds, and a caller must tell them apart:
 * - **not written** (safe to retry, here or on the next master): the save was refused before anything
 *   was written;
 * - **may be stored**: the save was written here but could not be acknowledged; it may survive (and be
 *   served) or be cut by the next master. Retrying it can store the message twice.
 */

/** Every may-be-stored sentence ends with this. */
export const MAY_BE_STORED_SUFFIX = 'the save may be stored';
/** Every not-enough-replicas refusal made before any write ends with this. */
export const NOTHING_WRITTEN_SUFFIX = 'nothing written';

export const refusalText = {
  /** Not written: this node does not lead the shard (or cannot prove its lease now). */
  notMaster: (shard: number, master: { rpc: string; epoch: number } | null): string =>
    `not the master of shard ${shard} (${master ? `master is ${master.rpc}, epoch ${master.epoch}` : 'no master is known'})`,
  /** Not written: too few in-sync replicas when the save arrived. */
  notEnoughReplicas: (inSync: number, required: number): string =>
    `not enough in-sync replicas (${inSync} of ${required} required); ${NOTHING_WRITTEN_SUFFIX}`,
  /** Not written: a cluster node takes no write before it has registered and learnt its role. */
  notJoined: (): string => 'this node has not joined its shard yet',
  /** May be stored: the lease could not be proven between the write and its acknowledgement. */
  leadershipLost: (why: string): string =>
    `leadership lost before acknowledgement (${why}); ${MAY_BE_STORED_SUFFIX}`,
  /** May be stored: the in-sync set shrank below the minimum while the save waited for it. */
  replicasShrank: (inSync: number, required: number): string =>
    `not enough in-sync replicas (${inSync} of ${required} required) while the save waited; ${MAY_BE_STORED_SUFFIX}`,
  /** May be stored: the server began shutting down while the save waited for its replicas. */
  shutdown: (): string => `the server is shutting down before acknowledgement; ${MAY_BE_STORED_SUFFIX}`,
};

/**
 * Not-written sentences, as they arrive at a client (after the `Pattern: ` prefix). A read-only
 * replica (static `master_address`) refuses every write before writing, too, and so does a node
 * between two roles (the bare `not the master`).
 */
const NOT_WRITTEN =
  /^(?:\w+: )?(?:not the master of shard \d+ |not the master$|not enough in-sync replicas \(\d+ of \d+ required\); nothing written$|this node has not joined its shard yet$|read-only replica: )/;
const MAY_BE_STORED = /(?:^|; )the save may be stored$/;

export type RefusalKind = 'not-written' | 'may-be-stored';

/** Which kind of refusal a server's error sentence is, or null for any other error. */
export function refusalKind(message: string): RefusalKind | null {
  if (MAY_BE_STORED.test(message)) return 'may-be-stored';
  if (NOT_WRITTEN.test(message)) return 'not-written';
  return null;
}
