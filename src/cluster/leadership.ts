/**
 * The rules that decide who may lead a shard (Kafka's, with etcd as the controller):
 *  - only a member of the recorded in-sync set may lead, for only its members hold every acknowledged
 *    save (any node while no set is recorded: a new shard; any node with min_insync_replicas=0, which
 *    gives that promise up);
 *  - membership is checked when elected, not only before campaigning: the check and the new epoch are
 *    one transaction, guarded by the campaign key and the in-sync record's revision, so a set shrunk
 *    meanwhile cannot be missed;
 *  - a node recorded out of the set leaves the election queue (it may not win), and queues again once a
 *    master records it back.
 * Pure of processes and sockets: the registry is etcd in production and an in-memory one in tests.
 */
import type { ShardRegistry } from './shard-registry.js';
import type { InSyncRecord } from './cluster-keys.js';

export type TakeOver =
  { kind: 'lead'; epoch: number } | { kind: 'ineligible'; inSync: string[] } | { kind: 'deposed' };

/** How often a claim is tried again when the in-sync record changed between the read and the claim. */
const CLAIM_ATTEMPTS = 5;

export class Leadership {
  constructor(
    private readonly registry: ShardRegistry,
    private readonly self: string,
    private readonly minInsync: number,
  ) {}

  /** Whether the recorded set lets this node lead. */
  mayLead(record: InSyncRecord | null): boolean {
    return this.minInsync === 0 || record === null || record.members.includes(this.self);
  }

  /** Whether this node may queue for the election now. */
  async mayCampaign(): Promise<boolean> {
    return this.mayLead((await this.registry.readInSync()).record);
  }

  /**
   * Elected by etcd: take the shard over with an epoch past both the recorded one and every epoch this
   * node has seen, or say why not. The in-sync set then holds this node alone until replicas catch up
   * with its log end.
   */
  async takeOver(campaignKey: string, localEpoch: number): Promise<TakeOver> {
    for (let attempt = 0; attempt < CLAIM_ATTEMPTS; attempt++) {
      const { record, revision } = await this.registry.readInSync();
      if (!this.mayLead(record)) return { kind: 'ineligible', inSync: record?.members ?? [] };
      const recorded = await this.registry.readEpoch();
      const epoch = Math.max(recorded, record?.epoch ?? 0, localEpoch) + 1;
      if (await this.registry.claim(campaignKey, revision, epoch, this.self)) return { kind: 'lead', epoch };
      // Either the campaign key is gone (deposed) or the record changed: read again to tell which.
    }
    return { kind: 'deposed' };
  }

  /** How the master records its in-sync set while it leads (false: deposed, nothing written). */
  recorder(campaignKey: string): (record: InSyncRecord) => Promise<boolean> {
    return (record) => this.registry.recordInSync(campaignKey, record);
  }
}
