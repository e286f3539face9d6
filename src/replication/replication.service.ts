import { Injectable } from '@nestjs/common';

/** Start-up steps 3 and 8 (filled in by the Replication issue). */
@Injectable()
export class ReplicationService {
  /** Step 3: start the master's live stream and, when master_address is set, the slave. */
  async start(): Promise<void> {}

  /** Step 8: accept slaves on sync_listen. */
  async listen(): Promise<void> {}
}
