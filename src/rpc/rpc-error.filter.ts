import { Catch, Logger, Optional, type ArgumentsHost, type RpcExceptionFilter } from '@nestjs/common';
import { RpcException, type TcpContext } from '@nestjs/microservices';
import { throwError, type Observable } from 'rxjs';
import type { WireError } from '../client/wire.js';
import { ImsMetrics } from '../metrics/ims-metrics.service.js';
import { ClusterRefusal } from '../replication/ack-errors.js';
import { CorruptRecordError, StorageInputError, StorageWriteError } from '../storage/storage-errors.js';

/** The message a client gets for an error thrown while serving a request. */
export function rpcErrorMessage(exception: unknown): string {
  if (exception instanceof RpcException) {
    const e = exception.getError();
    if (typeof e === 'string') return e;
    const message = (e as { message?: unknown }).message;
    return typeof message === 'string' ? message : JSON.stringify(message ?? e);
  }
  if (exception instanceof StorageInputError || exception instanceof ClusterRefusal) return exception.message;
  if (exception instanceof CorruptRecordError)
    return `storage: ${exception.file} offset ${exception.offset}: ${exception.reason}`;
  if (exception instanceof StorageWriteError) return `storage write failed: ${exception.message}`;
  return `internal error: ${(exception as Error)?.message ?? String(exception)}`;
}

/**
 * Cluster refusals are expected (a failover refuses every write for a few seconds) and can come by the
 * thousand: one line, no stack, for the first of each kind, then at most one line per interval counting
 * the others.
 */
export class RefusalLog {
  private readonly last = new Map<string, { at: number; suppressed: number }>();

  constructor(
    private readonly logger: Pick<Logger, 'warn'>,
    private readonly intervalMs = 5000,
    private readonly now: () => number = () => performance.now(),
  ) {}

  note(refusal: ClusterRefusal): void {
    const t = this.now();
    const seen = this.last.get(refusal.name);
    if (seen && t - seen.at < this.intervalMs) {
      seen.suppressed++;
      return;
    }
    const more = seen?.suppressed ? ` (and ${seen.suppressed} more of this kind since the last line)` : '';
    this.last.set(refusal.name, { at: t, suppressed: 0 });
    this.logger.warn(
      `refused (${refusal.mayBeStored ? 'may be stored' : 'not written'}): ${refusal.message}${more}`,
    );
  }
}

/** One for the process: refusals of single calls (the filter) and of batch items (the controller). */
export const refusalLog = new RefusalLog(new Logger('Rpc'));

/**
 * Turns every error of an RPC handler (validation, read-only replica, storage) into Nest's RPC error
 * packet `{status: 'error', message}` prefixed with the pattern, so the caller learns what was wrong while
 * the connection stays open for its other requests.
 */
@Catch()
export class RpcErrorFilter implements RpcExceptionFilter<unknown> {
  private readonly logger = new Logger('Rpc');
  private readonly refusals = refusalLog;

  constructor(@Optional() private readonly metrics?: ImsMetrics) {}

  catch(exception: unknown, host: ArgumentsHost): Observable<never> {
    const pattern =
      host.getType() === 'rpc' ? host.switchToRpc().getContext<TcpContext>().getPattern?.() : '';
    if (pattern) this.metrics?.rpcFailed(pattern);
    const message = rpcErrorMessage(exception);
    const expected = exception instanceof RpcException || exception instanceof StorageInputError;
    if (exception instanceof ClusterRefusal) this.refusals.note(exception);
    else if (!expected) this.logger.error(`${pattern}: ${message}`, (exception as Error)?.stack);
    const err: WireError = { status: 'error', message: pattern ? `${pattern}: ${message}` : message };
    return throwError(() => err);
  }
}
