/**
 * Where two logs stop agreeing, from their epoch histories (Kafka's leader-epoch idea). Pure: no I/O.
 *
 * A history entry (epoch, startId) says that records from `startId` on were written by the master of
 * `epoch`, up to the next entry's start (or the log end). Every master start begins a new, larger epoch,
 * and within one epoch the master's log only grows; a copy of the master's records is byte-identical.
 * So two nodes whose histories both hold epoch E *with the same start* hold the same records of E,
 * as far as both have them, and the same records before E's start.
 *
 * **Implicit epoch 0.** Records before a node's first entry (all of them when its history is empty) were
 * written before epochs existed (by Go or an older ims) and count as epoch 0, starting at the beginning
 * of the log (id 0). Every node has epoch 0, so two nodes always share at least it: they agree up to the
 * shorter of their epoch-0 ranges. That is safe where it matters:
 *   - a node that began its first epoch at the start of its log (id 32, a new folder) has an empty
 *     epoch-0 range, so nothing of the other side's pre-epoch records is taken as agreed;
 *   - a brand-new empty slave (history empty, log end 32) agrees at its log end: it has nothing to cut;
 *   - a pre-epoch slave of a master upgraded to epochs (history [(1, S)]) agrees up to min(S, its end):
 *     it keeps what it copied before the upgrade and cuts only what the master lost before S.
 * What it cannot see: two pre-epoch logs that forked (a Go 2.0 slave that accepted writes) look alike
 * here, as they do to Go's protocol; a caller that wants more can compare the record bytes just below
 * the agreed point. The same holds for unrelated folders that reuse the same epoch numbers and starts:
 * epochs are only meaningful within one replication group.
 */
import { epochHistoryProblem, type EpochEntry } from '../format/epoch-file.js';

export type { EpochEntry };

/** The epoch of records written before a node's first history entry. */
export const IMPLICIT_EPOCH = 0;

function indexOfEpoch(history: readonly EpochEntry[], epoch: number): number {
  for (let i = history.length - 1; i >= 0; i--) if (history[i].epoch === epoch) return i;
  return -1;
}

/** Where `epoch` starts on a node (0 for the implicit epoch), or null when its history lacks it. */
export function startOfEpoch(history: readonly EpochEntry[], epoch: number): number | null {
  if (epoch === IMPLICIT_EPOCH) return 0;
  const i = indexOfEpoch(history, epoch);
  return i < 0 ? null : history[i].startId;
}

/**
 * Where a node's records of `epoch` end: the next entry's start, clamped to its log end. Null when its
 * history does not have the epoch. Epoch 0 ends at the first entry's start (the log end when the
 * history is empty). An entry the node adopted from its master before copying that far can start past
 * its log end; then the node holds nothing of that epoch and the answer is the log end.
 */
export function endOfEpoch(history: readonly EpochEntry[], logEnd: number, epoch: number): number | null {
  if (epoch === IMPLICIT_EPOCH) return Math.min(history.length > 0 ? history[0].startId : logEnd, logEnd);
  const i = indexOfEpoch(history, epoch);
  if (i < 0) return null;
  return Math.min(i + 1 < history.length ? history[i + 1].startId : logEnd, logEnd);
}

/** The newest epoch both histories hold with the same start (IMPLICIT_EPOCH when none). */
export function commonEpoch(a: readonly EpochEntry[], b: readonly EpochEntry[]): number {
  for (let i = a.length - 1; i >= 0; i--) {
    const j = indexOfEpoch(b, a[i].epoch);
    if (j >= 0 && b[j].startId === a[i].startId) return a[i].epoch;
  }
  return IMPLICIT_EPOCH;
}

/**
 * How a local log stands against a remote one (a slave against its master):
 *   - `in-sync`: both end at the agreed point.
 *   - `behind`: the local log is a prefix of the remote's; copy from `localEnd`.
 *   - `diverged`: the local log holds records past `agreedEnd` that are not (and can never become) the
 *     remote's: either both logs go on differently past it, or the remote began a newer epoch there.
 *     The local log must be cut back to `agreedEnd` before it follows.
 *   - `ahead`: the remote's log is a prefix of the local one and the remote is still in the common
 *     epoch (it began no newer one): the local records past `remoteEnd` were written in that same epoch
 *     and the remote does not have them (it lost its tail without restarting, or it is a lagging copy).
 *     Nothing contradicts them yet, but a master in that epoch will write its next record at `remoteEnd`;
 *     what to do (cut to `agreedEnd` = `remoteEnd`, or refuse to follow) is the caller's decision.
 *     (A remote whose latest epoch is older than the local one's is a deposed master: compare the
 *     latest epochs before following it at all.)
 */
export type LogRelation = 'in-sync' | 'behind' | 'diverged' | 'ahead';

export interface Divergence {
  /** The newest epoch both histories hold with the same start (0: none, the implicit epoch). */
  commonEpoch: number;
  /** The id up to which the two logs agree: min of where each one's records of `commonEpoch` end. */
  agreedEnd: number;
  relation: LogRelation;
}

export function divergence(
  local: readonly EpochEntry[],
  localEnd: number,
  remote: readonly EpochEntry[],
  remoteEnd: number,
): Divergence {
  const epoch = commonEpoch(local, remote);
  const localEpochEnd = endOfEpoch(local, localEnd, epoch) as number;
  const remoteEpochEnd = endOfEpoch(remote, remoteEnd, epoch) as number;
  const agreedEnd = Math.min(localEpochEnd, remoteEpochEnd);
  let relation: LogRelation;
  if (agreedEnd >= localEnd) relation = agreedEnd >= remoteEnd ? 'in-sync' : 'behind';
  else {
    // The remote began an epoch after the common one: nothing past agreedEnd can ever be its.
    const remoteMovedOn = remote.length > 0 && remote[remote.length - 1].epoch !== epoch;
    relation = agreedEnd === remoteEnd && !remoteMovedOn ? 'ahead' : 'diverged';
  }
  return { commonEpoch: epoch, agreedEnd, relation };
}

/**
 * The id up to which the two logs agree: the newest epoch both histories hold with the same start
 * decides, and the logs agree up to where the earlier of the two nodes' records of that epoch ends
 * (see the module comment for epoch 0). A local log longer than this must be cut back to it before
 * following (`relation` in `divergence` tells the cases apart; for a local log merely ahead of the
 * remote in the same epoch, the answer is the remote's end and the caller decides).
 */
export function divergencePoint(
  local: readonly EpochEntry[],
  localEnd: number,
  remote: readonly EpochEntry[],
  remoteEnd: number,
): number {
  return divergence(local, localEnd, remote, remoteEnd).agreedEnd;
}

/**
 * The history a slave keeps once it follows the remote from `agreedEnd`: its own entries up to the
 * common epoch, then the remote's later ones (which may start past the slave's log end until it has
 * copied that far). Throws a RangeError when `agreedEnd` reaches into an epoch that only one of the two
 * holds: such an agreement would pin records of one master on another master's epoch.
 *
 * Order matters for crash safety: cut the log back to `agreedEnd` first, then store this history.
 * A crash in between leaves the old history over a shorter log, which gives the same answer next time;
 * the other order would let the adopted epochs vouch for the diverged records.
 */
export function mergeFollowerHistory(
  local: readonly EpochEntry[],
  remote: readonly EpochEntry[],
  agreedEnd: number,
): EpochEntry[] {
  const epoch = commonEpoch(local, remote);
  for (const [side, h] of [
    ['local', local],
    ['remote', remote],
  ] as const) {
    const end = endOfEpoch(h, Infinity, epoch) as number;
    if (agreedEnd > end) {
      throw new RangeError(
        `agreed end ${agreedEnd} is past the end of the common epoch ${epoch} in the ${side} history (${end})`,
      );
    }
  }
  const merged = [...local.filter((e) => e.epoch <= epoch), ...remote.filter((e) => e.epoch > epoch)];
  const problem = epochHistoryProblem(merged);
  if (problem) throw new RangeError(`merged epoch history is invalid: ${problem}`);
  return merged;
}

/**
 * Drops the entries that start past `logEnd`: epochs a follower adopted from its master but never
 * received records of. A follower about to become master trims its history first, so that its own new
 * epoch (starting at its log end) does not start before an epoch it claims to hold.
 */
export function trimHistory(history: readonly EpochEntry[], logEnd: number): EpochEntry[] {
  return history.filter((e) => e.startId <= logEnd);
}
