import * as fs from 'node:fs';
import * as path from 'node:path';
import { Injectable } from '@nestjs/common';
import { HealthIndicatorService } from '@nestjs/terminus';
import { ImsConfig } from '../../config/ims-config.js';
import { StorageService } from '../../storage/storage.service.js';
import { ShutdownState } from '../shutdown.js';

/** The file the writability check writes, fsyncs and removes in the storage folder. */
export const WRITE_PROBE_FILE = '.ims-write-probe';

/** Readiness parts about the data folder: open, writable, last fsync good, enough free space. */
@Injectable()
export class StorageHealthIndicator {
  constructor(
    private readonly health: HealthIndicatorService,
    private readonly storage: StorageService,
    private readonly config: ImsConfig,
    private readonly shutdown: ShutdownState,
  ) {}

  /** Open, not shutting down, no failed fsync, and a real write + fsync in the folder succeeds. */
  async checkWritable(key: string) {
    const session = this.health.check(key);
    const s = this.storage.status();
    const data = {
      writeBlock: s.writeBlock,
      lastFsyncAt: s.lastFsyncAt ? new Date(s.lastFsyncAt).toISOString() : null,
    };
    if (this.shutdown.draining) return session.down({ ...data, message: 'shutting down' });
    if (!s.open) return session.down({ ...data, message: 'storage is not open' });
    if (s.fsyncFailure) return session.down({ ...data, message: `fsync failed: ${s.fsyncFailure}` });
    const probe = path.join(this.config.storage_root, WRITE_PROBE_FILE);
    try {
      const fh = await fs.promises.open(probe, 'w');
      try {
        await fh.write(`${Date.now()}\n`);
        await fh.datasync();
      } finally {
        await fh.close();
      }
      await fs.promises.unlink(probe);
    } catch (err) {
      return session.down({
        ...data,
        message: `cannot write in ${this.config.storage_root}: ${(err as Error).message}`,
      });
    }
    return session.up(data);
  }

  /** Free space of the storage folder's file system at least min_free_disk_mb. */
  async checkDisk(key: string) {
    const session = this.health.check(key);
    const minFreeMb = this.config.min_free_disk_mb;
    try {
      const st = await fs.promises.statfs(this.config.storage_root);
      const freeMb = Math.floor((Number(st.bavail) * Number(st.bsize)) / (1024 * 1024));
      if (freeMb < minFreeMb) {
        return session.down({
          freeMb,
          minFreeMb,
          message: `only ${freeMb} MB free, below min_free_disk_mb ${minFreeMb}`,
        });
      }
      return session.up({ freeMb, minFreeMb });
    } catch (err) {
      return session.down({
        minFreeMb,
        message: `cannot stat ${this.config.storage_root}: ${(err as Error).message}`,
      });
    }
  }
}
