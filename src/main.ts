#!/usr/bin/env node
/**
 * ims entry point. `ims [flags] [config]` runs the server; `ims verify|inspect|repair ...` are the
 * operator tools. The server's start-up order (SPEC "Start-up") is all in bootstrap() below.
 */
import 'reflect-metadata';
import * as fs from 'node:fs';
import type * as net from 'node:net';
import { Logger, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { type MicroserviceOptions } from '@nestjs/microservices';
import { AppModule } from './app.module.js';
import { CLI_COMMANDS, runCli, TOOLS_USAGE } from './cli/cli.js';
import { ClusterService } from './cluster/cluster.service.js';
import { ConfigError, loadConfigFile } from './config/config-file.js';
import { parseHostPort, type ImsConfig } from './config/ims-config.js';
import { listening } from './config/setting-error.js';
import { serverTlsOptions, TlsConfig } from './config/tls-options.js';
import { ImsLogger } from './logging/ims-logger.js';
import { FlagError, LOG_FLAGS_USAGE, parseLogFlags, type LogFlags } from './logging/log-flags.js';
import { GorpcServer } from './rpc/gorpc/gorpc.server.js';
import { ImsTcpServer } from './rpc/ims-tcp.server.js';
import { InputBounds } from './rpc/input-bounds.js';
import { NetrpcServer } from './rpc/netrpc/netrpc.server.js';
import { ReplicationService } from './replication/replication.service.js';
import { BoundAddresses } from './status/bound-addresses.js';
import { installSignalHandlers } from './status/shutdown.js';
import { StorageService } from './storage/storage.service.js';
import { versionBanner } from './version.js';

export const DEFAULT_CONFIG = 'config/ims.cfg';
/** How long a failed start may spend closing what it opened before it exits anyway. */
const FAILED_START_CLOSE_MS = 5000;

/** What start-up has created so far, so that a failed start can close it. */
interface Started {
  app?: INestApplication;
}

async function bootstrap(config: ImsConfig, logger: ImsLogger, started: Started): Promise<void> {
  const app = await NestFactory.create(AppModule.forConfig(config), {
    logger,
    abortOnError: false,
    // A half-sent HTTP request must not hold up shutdown (storage closes after the HTTP server).
    forceCloseConnections: true,
  });
  started.app = app;
  const log = new Logger('ims');
  log.log(
    `rpc ${config.rpc_listen}, storage ${config.storage_root}${relativeNote(config)}, sync ${config.sync_listen}, ` +
      `master ${config.master_address ?? '-'}, http ${config.http_listen_address ?? '-'}, ` +
      `limit ${config.limit}, group_limit ${config.group_limit}, durability ${config.durability}`,
  );
  // 2. Open storage: blocks checked, torn tail cut, index loaded and repaired (or rebuilt).
  app.get(StorageService).open();
  // 2b. Cluster mode: the shard map in etcd has our shard, and the data folder is this shard's.
  const cluster = app.get(ClusterService);
  if (cluster.enabled) await cluster.check();
  // 3. Replication: the master's live stream always; the slave when master_address is set.
  const replication = app.get(ReplicationService);
  await replication.start();
  // 4. SIGINT/SIGTERM: app.close() runs the Nest shutdown hooks (stop intake, finish in-flight work,
  // fsync, save the index), then the process ends with 0. Not enableShutdownHooks: it re-raises the
  // signal after closing, so the exit status would say "killed by SIGTERM".
  installSignalHandlers(app, log);
  // 9 (registered now, listening last). RPC over the Nest TCP transport; global pipes are inherited.
  // TLS with tls_cert/tls_key (client certificates required with tls_ca); input bounded per connection
  // (max_frame_bytes, incomplete_frame_timeout_ms) and in total (max_pending_bytes, max_connections).
  const rpc = parseHostPort(config.rpc_listen);
  const tls = app.get(TlsConfig).material;
  const rpcServer = new ImsTcpServer({
    host: rpc.host ?? '0.0.0.0',
    port: rpc.port,
    bounds: app.get(InputBounds),
    incompleteFrameTimeoutMs: config.incomplete_frame_timeout_ms,
    ...(tls ? { tlsOptions: serverTlsOptions(tls) } : {}),
  });
  const rpcService = app.connectMicroservice<MicroserviceOptions>(
    { strategy: rpcServer },
    { inheritAppConfig: true },
  );
  // The same handlers over gorpc, for Go im servers, when configured, with the same input bounds.
  let gorpc: { server: GorpcServer; service: typeof rpcService } | undefined;
  if (config.gorpc_listen) {
    const g = parseHostPort(config.gorpc_listen);
    const bounds = app.get(InputBounds);
    const server = new GorpcServer({
      host: g.host ?? '0.0.0.0',
      port: g.port,
      setting: config.gorpc_listen,
      maxMessage: config.max_frame_bytes,
      stallMs: config.incomplete_frame_timeout_ms,
      bounds,
      ...(tls ? { tlsOptions: serverTlsOptions(tls) } : {}),
      limitConnections: (s) => bounds.limitConnections(s, 'gorpc'),
    });
    const service = app.connectMicroservice<MicroserviceOptions>(
      { strategy: server },
      { inheritAppConfig: true },
    );
    gorpc = { server, service };
  }
  // And over Go's net/rpc, for the newest Go im servers (rpc.DialHTTP), when configured: the same input
  // bounds as the RPC port (max_frame_bytes per gob message, the pending-bytes budget, stalls).
  let netrpc: { server: NetrpcServer; service: typeof rpcService } | undefined;
  if (config.netrpc_listen) {
    const n = parseHostPort(config.netrpc_listen);
    const bounds = app.get(InputBounds);
    const server = new NetrpcServer({
      host: n.host ?? '0.0.0.0',
      port: n.port,
      setting: config.netrpc_listen,
      maxMessage: config.max_frame_bytes,
      stallMs: config.incomplete_frame_timeout_ms,
      bounds,
      ...(tls ? { tlsOptions: serverTlsOptions(tls) } : {}),
      limitConnections: (s) => bounds.limitConnections(s, 'netrpc'),
    });
    const service = app.connectMicroservice<MicroserviceOptions>(
      { strategy: server },
      { inheritAppConfig: true },
    );
    netrpc = { server, service };
  }
  // 5-6. The flush jobs (@Interval) start when the application initialises.
  await app.init();
  // Each listener reports the address it is bound to (the real port when the config says port 0).
  const bound = app.get(BoundAddresses);
  // 7. HTTP status server, only when configured.
  if (config.http_listen_address) {
    const http = parseHostPort(config.http_listen_address);
    await listening('http_listen_address', config.http_listen_address, () =>
      app.listen(http.port, http.host ?? '0.0.0.0'),
    );
    bound.http = addressOf(app.getHttpServer().address());
    log.log(`http listening on ${bound.http}`);
  }
  // 8. Slaves.
  bound.sync = await listening('sync_listen', config.sync_listen, () => replication.listen());
  // 9. RPC.
  if (gorpc) {
    const { server, service } = gorpc;
    await listening('gorpc_listen', config.gorpc_listen!, () => service.listen());
    bound.gorpc = server.boundAddress();
    log.log(`gorpc listening on ${bound.gorpc}`);
  }
  if (netrpc) {
    const { server, service } = netrpc;
    await listening('netrpc_listen', config.netrpc_listen!, () => service.listen());
    bound.netrpc = server.boundAddress();
    log.log(`netrpc listening on ${bound.netrpc}`);
  }
  await listening('rpc_listen', config.rpc_listen, () => rpcService.listen());
  bound.rpc = rpcServer.boundAddress();
  const security = !tls ? '' : tls.ca ? ' (TLS, client certificates required)' : ' (TLS)';
  log.log(`rpc listening on ${bound.rpc}${security}`);
  bound.allBound = true;
  // 10. Cluster mode: register, then campaign for the shard; until elected this node follows or waits.
  if (cluster.enabled) await cluster.join({ rpc: bound.rpc!, sync: bound.sync!, http: bound.http });
}

/** How a relative storage_root was read, so the log says which folder a relative setting meant. */
function relativeNote(config: ImsConfig): string {
  const setting = config.storageRootSetting;
  return setting === undefined ? '' : ` (storage_root=${setting}, relative to the config file's folder)`;
}

function addressOf(a: net.AddressInfo | string | null): string | null {
  return a === null || typeof a === 'string' ? a : `${a.address}:${a.port}`;
}

/** `ims --help`: the server's usage, its flags and the operator tools. */
function programUsage(): string {
  return [
    'usage: ims [flags] [CONFIG]',
    `      run the server on CONFIG (default ${DEFAULT_CONFIG}); see README.md "Configuration"`,
    LOG_FLAGS_USAGE,
    'operator tools (ims COMMAND --help shows one):',
    TOOLS_USAGE.replace(/^usage:\n/, ''),
  ].join('\n');
}

const HELP = /^--?(h|help)$/;

export async function main(argv: string[]): Promise<void> {
  if ((CLI_COMMANDS as readonly string[]).includes(argv[0])) {
    process.exitCode = await runCli(argv);
    return;
  }
  // Before the flags are parsed: Go's flag package would call -help an undefined flag.
  if (argv[0] === 'help' || argv.some((a) => HELP.test(a))) {
    console.log(programUsage());
    return;
  }
  let flags: LogFlags;
  let args: string[];
  try {
    ({ flags, args } = parseLogFlags(argv));
  } catch (err) {
    if (!(err instanceof FlagError)) throw err;
    console.error(`ims: ${err.message}`);
    console.error(`usage: ims [flags] config\n${LOG_FLAGS_USAGE}\n(ims --help lists the operator tools too)`);
    process.exitCode = 2;
    return;
  }
  let configPath = args[0];
  if (!configPath) {
    if (!fs.existsSync(DEFAULT_CONFIG)) {
      console.log(versionBanner());
      console.log('usage: ims config');
      process.exitCode = 2;
      return;
    }
    configPath = DEFAULT_CONFIG;
  }
  // With -log_format=json every line is a log object, so the logger exists before the config is read.
  const json = flags.format === 'json';
  const logger = json ? new ImsLogger(flags) : null;
  if (logger) Logger.overrideLogger(logger);
  let config: ImsConfig;
  try {
    config = loadConfigFile(configPath);
  } catch (err) {
    if (err instanceof ConfigError) {
      if (logger) logger.error(err.message, 'config');
      else console.error(`ims: ${err.message}`);
      process.exitCode = 2;
      return;
    }
    throw err;
  }
  if (logger) logger.log(versionBanner().split('\n').join('; '), 'Version');
  else console.log(versionBanner());
  const started: Started = {};
  try {
    await bootstrap(config, logger ?? new ImsLogger(flags), started);
  } catch (err) {
    // One line: a SettingError names the key, its value and the cause.
    new Logger('ims').error(`start-up failed: ${(err as Error).message}`);
    await closeAfterFailedStart(started.app);
    process.exit(1);
  }
}

/**
 * Closes what a failed start had opened: storage fsyncs, saves its index and releases the folder's
 * lock (removing ims.lock), so the next start finds no stale lock. Bounded: a failed start must end.
 */
async function closeAfterFailedStart(app: INestApplication | undefined): Promise<void> {
  if (!app) return;
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      app.close(),
      new Promise((resolve) => (timer = setTimeout(resolve, FAILED_START_CLOSE_MS))),
    ]);
  } catch (err) {
    new Logger('ims').warn(`closing after the failed start: ${(err as Error).message}`);
  } finally {
    clearTimeout(timer);
  }
}

await main(process.argv.slice(2));
