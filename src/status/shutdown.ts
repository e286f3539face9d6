import * as net from 'node:net';
import * as os from 'node:os';
import {
  Injectable,
  Logger,
  type CallHandler,
  type ExecutionContext,
  type INestApplication,
  type LoggerService,
  type NestInterceptor,
  type OnModuleDestroy,
} from '@nestjs/common';
import { RpcException, type TcpContext } from '@nestjs/microservices';
import { finalize, tap, throwError, type Observable } from 'rxjs';
import { ImsMetrics } from '../metrics/ims-metrics.service.js';
import { StorageService } from '../storage/storage.service.js';

/** How long shutdown waits for in-flight RPC requests before closing anyway. */
export const DRAIN_TIMEOUT_MS = 5000;
/** After app.close(), how long a leftover handle (a peer's socket) may keep the process alive. */
const EXIT_GRACE_MS = 2000;

/** Whether the server is shutting down, and how many RPC requests are being handled. */
@Injectable()
export class ShutdownState {
  draining = false;
  inFlight = 0;
  private idleWaiters: (() => void)[] = [];

  begin(): void {
    this.inFlight++;
  }

  end(): void {
    this.inFlight--;
    if (this.inFlight === 0) for (const w of this.idleWaiters.splice(0)) w();
  }

  /** Resolves true when no request is in flight, false when `timeoutMs` ran out first. */
  whenIdle(timeoutMs: number): Promise<boolean> {
    if (this.inFlight === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.idleWaiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }
}

/**
 * Counts RPC requests in flight; once shutdown has begun, refuses new ones with a clear error. Also the
 * one place every handled request passes, so it times them for /metrics (ims_rpc_duration_seconds).
 */
@Injectable()
export class InFlightInterceptor implements NestInterceptor {
  constructor(
    private readonly state: ShutdownState,
    private readonly metrics: ImsMetrics,
  ) {}

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (context.getType() !== 'rpc') return next.handle();
    if (this.state.draining) return throwError(() => new RpcException('ims is shutting down'));
    const pattern = context.switchToRpc().getContext<TcpContext>().getPattern();
    const started = performance.now();
    let ok = true;
    this.state.begin();
    return next.handle().pipe(
      tap({ error: () => (ok = false) }),
      finalize(() => {
        this.state.end();
        // An error is counted by RpcErrorFilter (which also sees refusals made before this point).
        if (ok) this.metrics.rpcDone(pattern, true, started);
        else this.metrics.rpcTimed(pattern, started);
      }),
    );
  }
}

/**
 * First shutdown hook: stop taking RPC requests and wait (bounded) for those in flight, so their
 * replies go out before Nest closes the RPC sockets and storage closes (fsync, index save) last.
 */
@Injectable()
export class DrainOnShutdown implements OnModuleDestroy {
  private readonly logger = new Logger('Shutdown');

  constructor(private readonly state: ShutdownState) {}

  async onModuleDestroy(): Promise<void> {
    this.state.draining = true;
    const waiting = this.state.inFlight;
    if (waiting === 0) return;
    const started = Date.now();
    const idle = await this.state.whenIdle(DRAIN_TIMEOUT_MS);
    if (idle) this.logger.log(`${waiting} in-flight request(s) finished in ${Date.now() - started} ms`);
    else this.logger.warn(`${this.state.inFlight} request(s) still in flight after ${DRAIN_TIMEOUT_MS} ms`);
  }
}

/** Stops the listening sockets of the RPC microservices (open connections stay until the drain ends). */
function stopAcceptingRpc(app: INestApplication): void {
  for (const ms of app.getMicroservices()) {
    // NestMicroservice keeps its transport server private; the TCP one holds a net.Server.
    const server = (ms as unknown as { serverInstance?: { server?: unknown } }).serverInstance?.server;
    if (server instanceof net.Server && server.listening) server.close();
  }
}

/**
 * SIGINT/SIGTERM: close the app (RPC intake stops, in-flight work finishes, replication closes,
 * storage fsyncs, saves both index files and releases its lock) and end with status 0, or 1 when the
 * log could not be made durable. A second signal while closing exits at once with 128 + signal.
 */
export function installSignalHandlers(app: INestApplication, log: LoggerService): void {
  let closing = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    const code = 128 + (os.constants.signals[signal] ?? 15);
    if (closing) {
      log.error?.(`${signal} during shutdown: exiting now (${code}) without finishing the shutdown`);
      process.exit(code);
    }
    closing = true;
    log.log(`${signal}: shutting down (a second signal exits at once)`);
    app.get(ShutdownState).draining = true;
    stopAcceptingRpc(app);
    const started = Date.now();
    app.close().then(
      () => {
        const failure = app.get(StorageService).status().fsyncFailure;
        process.exitCode = failure ? 1 : 0;
        if (failure) log.error?.(`shut down after a failed fsync: ${failure}`);
        log.log(`shutdown complete in ${Date.now() - started} ms`);
        // Nothing should be left; if a module left a socket open, it must not keep a closed server up.
        setTimeout(() => {
          log.warn?.(
            `still running ${EXIT_GRACE_MS} ms after shutdown (${process.getActiveResourcesInfo().join(', ')}): exiting`,
          );
          process.exit();
        }, EXIT_GRACE_MS).unref();
      },
      (err: Error) => {
        log.error?.(`shutdown failed: ${err.message}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}
