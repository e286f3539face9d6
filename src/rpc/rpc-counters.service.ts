import { Injectable } from '@nestjs/common';

/** What /summary reports about RPC traffic (Go's server_summary counters). */
export interface RpcCounts {
  request_count: number;
  peer_message_count: number;
  group_message_count: number;
}

/**
 * RPC counters, one instance per process (RpcModule exports it for the Status module).
 * requestCount counts every request routed to a handler, refused ones included, as Go counts calls;
 * peerMessageCount counts user-queue entries written (a SavePeerGroupMessage adds one per member);
 * groupMessageCount counts super-group saves.
 */
@Injectable()
export class RpcCountersService {
  requestCount = 0;
  peerMessageCount = 0;
  groupMessageCount = 0;

  snapshot(): RpcCounts {
    return {
      request_count: this.requestCount,
      peer_message_count: this.peerMessageCount,
      group_message_count: this.groupMessageCount,
    };
  }
}
