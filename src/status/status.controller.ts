import { Controller, Get, Logger } from '@nestjs/common';
import { ClusterService } from '../cluster/cluster.service.js';
import { ImsConfig } from '../config/ims-config.js';
import { RpcCountersService } from '../rpc/rpc-counters.service.js';
import { StorageService } from '../storage/storage.service.js';
import { BoundAddresses } from './bound-addresses.js';
import { EventLoopMonitor } from './event-loop.monitor.js';
import { ReplicationHealthIndicator } from './indicators/replication.health.js';

const STARTED_AT = Date.now();

/** Counts the process's libuv handles and requests by kind (Node's nearest thing to goroutines). */
function activeResources(): { total: number; byType: Record<string, number> } {
  const byType: Record<string, number> = {};
  const list = process.getActiveResourcesInfo();
  for (const t of list) byType[t] = (byType[t] ?? 0) + 1;
  return { total: list.length, byType };
}

/** Go's /summary and /stack. */
@Controller()
export class StatusController {
  private readonly logger = new Logger('Status');

  constructor(
    private readonly counters: RpcCountersService,
    private readonly storage: StorageService,
    private readonly eventLoop: EventLoopMonitor,
    private readonly replication: ReplicationHealthIndicator,
    private readonly config: ImsConfig,
    private readonly bound: BoundAddresses,
    private readonly cluster: ClusterService,
  ) {}

  @Get('summary')
  summary() {
    const mem = process.memoryUsage();
    const s = this.storage.status();
    const resources = activeResources();
    return {
      // Go's three counters, same names.
      request_count: this.counters.requestCount,
      peer_message_count: this.counters.peerMessageCount,
      group_message_count: this.counters.groupMessageCount,
      // Stand-ins for goroutine_count: libuv handles/requests alive, and how busy the event loop is.
      active_resources: resources.total,
      active_resources_by_type: resources.byType,
      event_loop: this.eventLoop.snapshot(),
      heap_used: mem.heapUsed,
      heap_total: mem.heapTotal,
      rss: mem.rss,
      external: mem.external,
      pid: process.pid,
      node_version: process.version,
      started_at: new Date(STARTED_AT).toISOString(),
      uptime_seconds: Math.round(process.uptime()),
      // Bound addresses (real ports when the config said port 0).
      listening: {
        rpc: this.bound.rpc,
        sync: this.bound.sync,
        http: this.bound.http,
        gorpc: this.bound.gorpc,
        netrpc: this.bound.netrpc,
      },
      storage: {
        root: this.config.storage_root,
        open: s.open,
        durability: s.durability,
        next_message_id: s.nextId,
        durable_message_id: s.durableId,
        write_block: s.writeBlock,
        write_block_size: s.writeBlockSize,
        block_size: s.blockSize,
        peer_index_entries: s.peerEntries,
        group_index_entries: s.groupEntries,
        peer_index_bytes: s.indexBytes.peer,
        group_index_bytes: s.indexBytes.group,
        bytes_since_index_save: s.bytesSinceIndexSave,
        first_message_id: s.firstMessageId,
        retention_bytes_reclaimed: s.retentionBytesReclaimed,
        queue_format: s.queueFormat,
        queue_format_since: s.queueFormatSince,
        last_fsync_at: s.lastFsyncAt ? new Date(s.lastFsyncAt).toISOString() : null,
        fsync_failure: s.fsyncFailure,
      },
      replication: this.replication.view(),
      cluster: this.cluster.status(),
    };
  }

  /**
   * A diagnostic report of the process (JS stack, native stack, libuv handles, heap), in the answer. It is
   * also logged at -v=1 only: one report is several kilobytes, too much for a log line by default.
   */
  @Get('stack')
  stack() {
    const report = process.report.getReport() as unknown as Record<string, unknown>;
    // The environment may hold secrets; a status endpoint must not hand them out.
    delete report.environmentVariables;
    this.logger.debug(`stack report: ${JSON.stringify(report)}`);
    return report;
  }
}
