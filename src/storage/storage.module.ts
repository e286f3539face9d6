import { Module } from '@nestjs/common';
import { FlushJobs } from './flush.jobs.js';
import { StorageService } from './storage.service.js';

@Module({
  providers: [StorageService, FlushJobs],
  exports: [StorageService],
})
export class StorageModule {}
