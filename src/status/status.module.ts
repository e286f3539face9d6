import { Module } from '@nestjs/common';
import { StorageModule } from '../storage/storage.module.js';

/** Flush jobs, /summary, /stack and health probes (filled in by the Status issue). */
@Module({ imports: [StorageModule] })
export class StatusModule {}
