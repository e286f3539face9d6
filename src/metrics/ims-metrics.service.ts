import * as fs from 'node:fs';
import * as path from 'node:path';
import { Injectable } from '@nestjs/common';
import { Counter, Gauge, Histogram, register, type Metric } from 'prom-client';
import { ImsConfig } from '../config/ims-config.js';
import { ReplicationService } from '../replication/replication.service.js';
import type { SlaveLinkStatus } from '../replication/sync-slave.js';
import { RpcCountersService } from '../rpc/rpc-counters.service.js';
import { StorageService } from '../storage/storage.service.js';
import { InputBounds } from '../rpc/input-bounds.js';
import { storageProbes } from './probes.js';

const BLOCK_FILE = /^message_\d+$/;

/** One label set of the RPC metrics, looked up once per pattern rather than hashed on every request. */
interface PatternMetrics {
  ok: Counter.Internal;
  error: Counter.Internal;
  seconds: Histogram.Internal<'pattern'>;
}

/**
 * ims's own Prometheus metrics (`ims_…`), on prom-client's default registry, which GET /metrics serves
 * together with Node's default metrics. Most are read from the status surfaces (/summary's sources) when
 * Prometheus scrapes; only RPC requests, fdatasyncs and index saves are observed as they happen.
 */
@Injectable()
export class ImsMetrics {
  private readonly patterns = new Map<string, PatternMetrics>();
  private readonly rpcRequests: Counter<'pattern' | 'outcome'>;
  private readonly rpcSeconds: Histogram<'pattern'>;

  constructor(
    private readonly config: ImsConfig,
    private readonly storage: StorageService,
    private readonly replication: ReplicationService,
    private readonly counters: RpcCountersService,
    private readonly bounds: InputBounds,
  ) {
    // A second app in the same process (tests) replaces the first one's metrics instead of failing.
    for (const name of register.getMetricsAsArray().map((m) => (m as unknown as { name: string }).name))
      if (name.startsWith('ims_')) register.removeSingleMetric(name);

    this.rpcRequests = new Counter({
      name: 'ims_rpc_requests_total',
      help: 'RPC requests handled, by pattern and outcome (ok, error)',
      labelNames: ['pattern', 'outcome'],
    });
    this.rpcSeconds = new Histogram({
      name: 'ims_rpc_duration_seconds',
      help: 'Time from a request reaching its handler to its reply (saves include the fsync they wait for)',
      labelNames: ['pattern'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    });

    const fsyncSeconds = new Histogram({
      name: 'ims_fsync_duration_seconds',
      help: 'Duration of the fdatasync of the write block (group commit)',
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
    });
    const fsyncGroup = new Histogram({
      name: 'ims_fsync_group_size',
      help: 'Saves released by one fdatasync (group commit size)',
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096],
    });
    const fsyncFailures = new Counter({
      name: 'ims_fsync_failures_total',
      help: 'Failed fdatasyncs (storage refuses writes after one)',
    });
    const indexSeconds = new Histogram({
      name: 'ims_index_save_duration_seconds',
      help: 'Time to save both index files',
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    });
    storageProbes.fsync = (seconds, released) => {
      fsyncSeconds.observe(seconds);
      fsyncGroup.observe(released);
    };
    storageProbes.fsyncFailed = () => fsyncFailures.inc();
    storageProbes.indexSaved = (seconds) => indexSeconds.observe(seconds);

    this.readMetrics();
  }

  /** A request answered: its pattern, and when it reached the interceptor (performance.now()). */
  rpcDone(pattern: string, ok: boolean, startedMs: number): void {
    const m = this.forPattern(pattern);
    (ok ? m.ok : m.error).inc();
    m.seconds.observe((performance.now() - startedMs) / 1000);
  }

  /** A failed request's time (its error is counted by rpcFailed). */
  rpcTimed(pattern: string, startedMs: number): void {
    this.forPattern(pattern).seconds.observe((performance.now() - startedMs) / 1000);
  }

  /** A request answered with an error (validation, a guard's refusal, storage, the shutdown drain). */
  rpcFailed(pattern: string): void {
    this.forPattern(pattern).error.inc();
  }

  private forPattern(pattern: string): PatternMetrics {
    let m = this.patterns.get(pattern);
    if (!m) {
      m = {
        ok: this.rpcRequests.labels(pattern, 'ok'),
        error: this.rpcRequests.labels(pattern, 'error'),
        seconds: this.rpcSeconds.labels(pattern),
      };
      this.patterns.set(pattern, m);
    }
    return m;
  }

  /** Metrics whose value is read from the status surfaces when Prometheus scrapes. */
  private readMetrics(): void {
    const storage = this.storage;
    const replication = this.replication;
    const counters = this.counters;
    const bounds = this.bounds;
    const root = this.config.storage_root;
    const open = () => storage.isOpen;

    // Counters kept elsewhere as plain numbers: each scrape adds what they grew by since the last one.
    const monotonic = (
      name: string,
      help: string,
      labelNames: string[],
      read: () => Record<string, number>,
    ): Metric => {
      const last = new Map<string, number>();
      return new Counter({
        name,
        help,
        labelNames,
        collect() {
          for (const [key, value] of Object.entries(read())) {
            const delta = value - (last.get(key) ?? 0);
            last.set(key, value);
            if (delta <= 0) continue;
            if (labelNames.length === 0) this.inc(delta);
            else this.inc({ [labelNames[0]]: key }, delta);
          }
        },
      });
    };

    monotonic(
      'ims_messages_stored_total',
      'Messages stored by RPC: peer queue entries and group messages',
      ['kind'],
      () => ({
        peer: counters.peerMessageCount,
        group: counters.groupMessageCount,
      }),
    );
    monotonic('ims_bytes_written_total', 'Bytes appended to block files since start', [], () => ({
      '': open() ? storage.store.files.bytesWritten : 0,
    }));
    monotonic('ims_torn_tail_cuts_total', 'Torn tails cut from the write block at start-up', [], () => ({
      '': open() && storage.store.openReport?.tornTail ? 1 : 0,
    }));
    monotonic(
      'ims_diverged_tail_cuts_total',
      'Tails a slave cut from its log because its master does not have them',
      [],
      () => ({ '': storage.divergedTailCuts }),
    );
    monotonic('ims_slave_records_applied_total', 'Records this slave wrote from its master', [], () => ({
      '': replication.status().slave?.recordsApplied ?? 0,
    }));
    monotonic(
      'ims_input_dropped_total',
      'Connections dropped for their input, by reason',
      ['reason'],
      () => ({
        ...bounds.dropped,
      }),
    );

    new Gauge({
      name: 'ims_blocks',
      help: 'Block files in the data folder',
      collect() {
        this.set(folderUsage(root).blocks);
      },
    });
    new Gauge({
      name: 'ims_storage_folder_bytes',
      help: 'Bytes of the files in the data folder (blocks, index files, kept-aside copies)',
      collect() {
        this.set(folderUsage(root).bytes);
      },
    });
    new Gauge({
      name: 'ims_log_end',
      help: 'Id the next record gets (a byte position in the log)',
      collect() {
        this.set(open() ? storage.logEnd : 0);
      },
    });
    new Gauge({
      name: 'ims_durable_end',
      help: 'Ids below this are on disk (fdatasynced)',
      collect() {
        this.set(open() ? storage.durableEnd : 0);
      },
    });
    new Gauge({
      name: 'ims_storage_failed',
      help: '1 when storage refuses writes after a failed fdatasync',
      collect() {
        this.set(storage.status().fsyncFailure ? 1 : 0);
      },
    });
    new Gauge({
      name: 'ims_replication_lag_bytes',
      help: 'Bytes of the log a slave of this master does not hold yet, per replica (address)',
      labelNames: ['replica'],
      collect() {
        this.reset();
        for (const s of replication.status().master.slaves) this.set({ replica: s.address }, s.lagBytes);
      },
    });
    new Gauge({
      name: 'ims_replication_lag_seconds',
      help: 'Age of the oldest write an ims slave has not acknowledged, per replica (0: holds everything)',
      labelNames: ['replica'],
      collect() {
        this.reset();
        for (const s of replication.status().master.slaves)
          if (s.lagMs !== null) this.set({ replica: s.address }, s.lagMs / 1000);
      },
    });
    new Gauge({
      name: 'ims_replication_in_sync',
      help: 'Whether an ims slave is in the in-sync set (1) or not (0), per replica',
      labelNames: ['replica'],
      collect() {
        this.reset();
        for (const s of replication.status().master.slaves)
          if (s.inSync !== null) this.set({ replica: s.address }, s.inSync ? 1 : 0);
      },
    });
    new Gauge({
      name: 'ims_replication_in_sync_replicas',
      help: 'Replicas in the in-sync set (min_insync_replicas counts these)',
      collect() {
        this.set(replication.status().master.inSyncReplicas);
      },
    });
    // Labelled by the master's address, so a master (no slave link) has none of these series.
    const slaveGauge = (name: string, help: string, read: (s: SlaveLinkStatus) => number | null) =>
      new Gauge({
        name,
        help,
        labelNames: ['master'],
        collect() {
          this.reset();
          const s = replication.status().slave;
          const v = s ? read(s) : null;
          if (s && v !== null) this.set({ master: s.masterAddress }, v);
        },
      });
    slaveGauge('ims_slave_connected', 'This slave is linked to its master (1) or not (0)', (s) =>
      s.connected ? 1 : 0,
    );
    slaveGauge(
      'ims_slave_lag_bytes',
      "Bytes of the master's log this slave does not hold (known with an ims master)",
      (s) => s.lagBytes,
    );
    slaveGauge(
      'ims_slave_lag_seconds',
      'Seconds since this slave last held everything its master had',
      (s) => s.lagMs / 1000,
    );
    new Gauge({
      name: 'ims_rpc_connections',
      help: 'Open connections on the RPC port',
      collect() {
        this.set(bounds.rpcConnections);
      },
    });
    new Gauge({
      name: 'ims_input_pending_bytes',
      help: 'Characters held for unfinished RPC frames, all connections together',
      collect() {
        this.set(bounds.pendingTotal);
      },
    });
  }
}

/** Block count and bytes of the data folder, read at scrape time (a readdir and a stat per file). */
function folderUsage(root: string): { blocks: number; bytes: number } {
  let blocks = 0;
  let bytes = 0;
  let names: string[];
  try {
    names = fs.readdirSync(root);
  } catch {
    return { blocks, bytes };
  }
  for (const name of names) {
    try {
      const st = fs.statSync(path.join(root, name));
      if (!st.isFile()) continue;
      bytes += st.size;
      if (BLOCK_FILE.test(name)) blocks++;
    } catch {
      // Removed between readdir and stat (retention, an index save's rename): not counted.
    }
  }
  return { blocks, bytes };
}
