/**
 * The cluster's refusals as typed errors, so that the RPC error filter sends their sentence as it is
 * (no `internal error:` prefix) and logs them without a stack: they are expected during a failover.
 * The sentences are in src/format/refusals.ts, which the client package reads too.
 */
import { refusalText, type RefusalKind } from '../format/refusals.js';

export abstract class ClusterRefusal extends Error {
  abstract readonly kind: RefusalKind;
  /** True when the save was written and may survive: the caller must not simply send it again. */
  get mayBeStored(): boolean {
    return this.kind === 'may-be-stored';
  }
}

/** Refused before anything was written: safe to retry (here later, or on the next master). */
export class NotWrittenError extends ClusterRefusal {
  readonly kind = 'not-written';
  constructor(message: string) {
    super(message);
    this.name = 'NotWrittenError';
  }
}

/** Written here but not acknowledged: it may be stored (or cut by the next master). Not safe to retry. */
export class MayBeStoredError extends ClusterRefusal {
  readonly kind = 'may-be-stored';
  constructor(message: string) {
    super(message);
    this.name = 'MayBeStoredError';
  }
}

/** Not written: fewer in-sync replicas than min_insync_replicas when the save arrived. */
export class NotEnoughReplicasError extends NotWrittenError {
  constructor(inSync: number, required: number) {
    super(refusalText.notEnoughReplicas(inSync, required));
    this.name = 'NotEnoughReplicasError';
  }
}

/** May be stored: the in-sync set shrank below min_insync_replicas while the (written) save waited. */
export class ReplicasShrankError extends MayBeStoredError {
  constructor(inSync: number, required: number) {
    super(refusalText.replicasShrank(inSync, required));
    this.name = 'ReplicasShrankError';
  }
}

/** May be stored: leadership could not be proven between the write and its acknowledgement. */
export class LeadershipLostError extends MayBeStoredError {
  constructor(why: string) {
    super(refusalText.leadershipLost(why));
    this.name = 'LeadershipLostError';
  }
}

/** May be stored: the server shut down while the save waited for its replicas. */
export class ShutdownBeforeAckError extends MayBeStoredError {
  constructor() {
    super(refusalText.shutdown());
    this.name = 'ShutdownBeforeAckError';
  }
}
