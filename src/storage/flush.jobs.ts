import { Injectable, Logger, type OnApplicationBootstrap } from '@nestjs/common';
import { Interval } from '@nestjs/schedule';
import { ImsConfig } from '../config/ims-config.js';
import { StorageService } from './storage.service.js';

export const FSYNC_INTERVAL_MS = 1000;
export const INDEX_SAVE_INTERVAL_MS = 5 * 60 * 1000;
/** How often retention looks for expired blocks (blocks are sealed rarely; a minute is plenty). */
export const RETENTION_INTERVAL_MS = 60 * 1000;

/**
 * Start-up steps 5 and 6: every second fsync the write block when it is dirty; every five minutes
 * save the index files when the log grew past `index_save_blocks` blocks since the last save.
 * A run that is still going when its next tick comes is not started twice. A failed fsync is not
 * retried: the engine has failed closed (writes refused, readiness down); it is logged once, loudly.
 */
@Injectable()
export class FlushJobs implements OnApplicationBootstrap {
  private readonly logger = new Logger('FlushJobs');
  private fsyncRunning = false;
  private indexRunning = false;
  private reportedFailure: string | null = null;

  constructor(
    private readonly storage: StorageService,
    private readonly config: ImsConfig,
  ) {}

  onApplicationBootstrap(): void {
    this.logger.debug(
      `fsync every ${FSYNC_INTERVAL_MS} ms when dirty; index check every ${INDEX_SAVE_INTERVAL_MS} ms, ` +
        `saving past ${this.config.index_save_blocks * this.config.block_size} new log bytes`,
    );
  }

  @Interval('fsync-write-block', FSYNC_INTERVAL_MS)
  async fsyncWriteBlock(): Promise<void> {
    if (this.fsyncRunning || !this.storage.isOpen) return;
    if (this.storage.status().fsyncFailure) return this.reportFailure();
    this.fsyncRunning = true;
    try {
      await this.storage.flush();
    } catch {
      this.reportFailure();
    } finally {
      this.fsyncRunning = false;
    }
  }

  @Interval('save-index', INDEX_SAVE_INTERVAL_MS)
  async saveIndexIfDue(): Promise<void> {
    if (this.indexRunning || !this.storage.isOpen) return;
    this.indexRunning = true;
    const started = Date.now();
    try {
      const bytes = this.storage.status().bytesSinceIndexSave;
      if (await this.storage.saveIndexIfDue()) {
        this.logger.log(
          `saved index files (${bytes} log bytes since the last save, ${Date.now() - started} ms)`,
        );
      } else {
        this.logger.verbose(`index save not due (${bytes} log bytes since the last save)`);
      }
    } catch (err) {
      // The old index files stay valid (saves are atomic); the next tick or shutdown tries again.
      this.logger.error(`saving the index files failed: ${(err as Error).message}`);
    } finally {
      this.indexRunning = false;
    }
  }

  /** Retention (retention_hours, retention_bytes): deletes expired sealed blocks, oldest first. */
  @Interval('retention', RETENTION_INTERVAL_MS)
  retention(): void {
    if (!this.storage.isOpen || (this.config.retention_hours === 0 && this.config.retention_bytes === 0))
      return;
    try {
      const r = this.storage.applyRetention();
      if (r.deleted.length > 0) {
        this.logger.log(
          `retention: deleted ${r.deleted.join(', ')} (${r.bytesReclaimed} bytes); the log now starts at ${r.firstId}`,
        );
      }
    } catch (err) {
      this.logger.error(`retention pass failed: ${(err as Error).message}`);
    }
  }

  private reportFailure(): void {
    const failure = this.storage.status().fsyncFailure;
    if (!failure || failure === this.reportedFailure) return;
    this.reportedFailure = failure;
    this.logger.fatal(
      `fsync of the write block failed: ${failure}. Writes are refused and readiness is down; ` +
        'the data folder needs attention and the server a restart.',
    );
  }
}
