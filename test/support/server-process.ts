/**
 * Starts the real ims server (dist/src/main.js) as a child process on loopback ports with a config in a
 * temp folder, and stops or kills it. Every e2e test goes through here.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { REPO_ROOT, tempDir } from './fixtures.js';

export const MAIN_JS = path.join(REPO_ROOT, 'dist/src/main.js');

/**
 * A port that was free a moment ago on 127.0.0.1. Only for "nothing listens here" (a dead master, a
 * refused connection): a server under test listens on port 0 and reports its real port instead.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

export interface ServerOptions {
  /** Data folder; a new temp folder when omitted. */
  dataDir?: string;
  /** master_address for a slave. */
  masterAddress?: string;
  /** Serve HTTP status (default true). */
  http?: boolean;
  /** Extra config keys (e.g. durability, block_size). */
  config?: Record<string, string | number>;
  /** Extra command-line flags placed before the config path. */
  flags?: string[];
  /** Fixed ports (e.g. to restart a master on the same ports); port 0 (the kernel picks) otherwise. */
  ports?: Partial<{ rpc: number; sync: number; http: number }>;
  /** Wait for "rpc listening" (default true). */
  waitReady?: boolean;
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Node flags placed before the entry point (e.g. `--import` of a test preload). */
  nodeFlags?: string[];
  /** Run the server as this user and group (the tests run as root), e.g. 65534 (nobody). */
  user?: { uid: number; gid: number };
}

const LISTENING = /\b(rpc|sync|http|gorpc|netrpc) listening on \S*:(\d+)\b/;

export class ServerProcess {
  readonly output: string[] = [];
  private exitPromise: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly fixedPorts: Partial<Record<'rpc' | 'sync' | 'http', number>>;

  constructor(
    readonly proc: ChildProcess,
    readonly dataDir: string,
    readonly configPath: string,
    ports: Partial<Record<'rpc' | 'sync' | 'http', number>>,
    /** Where the log goes when not to the console (-log_dir). */
    private readonly logFile?: string,
  ) {
    this.fixedPorts = ports;
    const onData = (chunk: Buffer) =>
      this.output.push(
        ...chunk
          .toString()
          .split('\n')
          .filter((l) => l.length > 0),
      );
    proc.stdout?.on('data', onData);
    proc.stderr?.on('data', onData);
    this.exitPromise = new Promise((resolve) =>
      proc.once('exit', (code, signal) => resolve({ code, signal })),
    );
  }

  /** Every log line so far, from the console or the -log_dir file. */
  lines(): string[] {
    if (!this.logFile || !fs.existsSync(this.logFile)) return this.output;
    return [...this.output, ...fs.readFileSync(this.logFile, 'utf8').split('\n')];
  }

  /**
   * The ports the server is bound to, as its "… listening on" start-up lines report them (the config
   * asks for port 0, so the kernel picks: no window in which another process can take the port).
   */
  get ports(): { rpc: number; sync: number; http: number; gorpc: number; netrpc: number } {
    const found: Partial<Record<string, number>> = { ...this.fixedPorts };
    for (const line of this.lines()) {
      const m = LISTENING.exec(line);
      if (m) found[m[1]] = Number(m[2]);
    }
    const port = (kind: 'rpc' | 'sync' | 'http') => {
      const v = found[kind];
      if (!v) throw new Error(`the server has not reported its ${kind} port yet:\n${this.logText()}`);
      return v;
    };
    // No HTTP listener (http: false) reads as port 0, so `ports` can be handed on to a restart.
    // Likewise no gorpc or netrpc listener (no gorpc_listen, netrpc_listen) reads as port 0.
    return {
      rpc: port('rpc'),
      sync: port('sync'),
      http: found.http ?? 0,
      gorpc: found.gorpc ?? 0,
      netrpc: found.netrpc ?? 0,
    };
  }

  get rpcAddress(): string {
    return `127.0.0.1:${this.ports.rpc}`;
  }

  get syncAddress(): string {
    return `127.0.0.1:${this.ports.sync}`;
  }

  get httpBase(): string {
    return `http://127.0.0.1:${this.ports.http}`;
  }

  get exited(): boolean {
    return this.proc.exitCode !== null || this.proc.signalCode !== null;
  }

  logText(): string {
    return this.output.join('\n');
  }

  /** Resolves when a log line matches, rejects on timeout or exit. */
  async waitForLog(re: RegExp, timeoutMs = 15000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.lines().find((l) => re.test(l));
      if (hit) return hit;
      if (this.exited) throw new Error(`server exited before logging ${re}:\n${this.logText()}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${re}:\n${this.logText()}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  waitExit(timeoutMs = 20000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    return Promise.race([
      this.exitPromise,
      new Promise<never>((_, reject) =>
        setTimeout(
          () => reject(new Error(`server did not exit in ${timeoutMs} ms:\n${this.logText()}`)),
          timeoutMs,
        ).unref(),
      ),
    ]);
  }

  /** SIGTERM (or another signal) and wait for the exit. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 20000) {
    if (this.exited) return this.exitPromise;
    this.proc.kill(signal);
    return this.waitExit(timeoutMs);
  }

  /** SIGKILL: no shutdown hooks run. */
  async kill9() {
    if (this.exited) return this.exitPromise;
    this.proc.kill('SIGKILL');
    return this.waitExit();
  }
}

export function writeConfig(dir: string, values: Record<string, string | number | undefined>): string {
  const file = path.join(dir, 'ims.cfg');
  const text = Object.entries(values)
    .filter(([, v]) => v !== undefined && v !== '')
    .map(([k, v]) => `${k}=${v}`)
    .join('\n');
  fs.writeFileSync(file, text + '\n');
  return file;
}

/** Starts a server and waits until its RPC port listens. */
export async function startServer(options: ServerOptions = {}): Promise<ServerProcess> {
  const work = tempDir('ims-srv-');
  const dataDir = options.dataDir ?? path.join(work, 'data');
  const ports = options.ports ?? {};
  const configPath = writeConfig(work, {
    rpc_listen: `127.0.0.1:${ports.rpc ?? 0}`,
    storage_root: dataDir,
    sync_listen: `127.0.0.1:${ports.sync ?? 0}`,
    kefu_appid: 0,
    http_listen_address: options.http === false ? undefined : `127.0.0.1:${ports.http ?? 0}`,
    master_address: options.masterAddress,
    ...options.config,
  });
  const args = [...(options.nodeFlags ?? []), MAIN_JS, ...(options.flags ?? []), configPath];
  // Another user must be able to read the config (mkdtemp makes the folder private to root).
  if (options.user) fs.chmodSync(work, 0o755);
  const proc = spawn(process.execPath, args, {
    cwd: work,
    ...options.user,
    env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logDirFlag = options.flags?.find((f) => f.startsWith('-log_dir='));
  const logFile = logDirFlag ? path.join(logDirFlag.slice('-log_dir='.length), 'ims.log') : undefined;
  const server = new ServerProcess(proc, dataDir, configPath, ports, logFile);
  if (options.waitReady !== false) await server.waitForLog(/\brpc listening on/);
  return server;
}

/**
 * Test teardown: resumes servers a test may have paused (SIGSTOP), kills them all and removes their
 * config folders. A paused process would ignore SIGKILL's exit until resumed.
 */
export async function killAll(servers: readonly ServerProcess[]): Promise<void> {
  for (const s of servers) {
    try {
      if (s.proc.pid) process.kill(s.proc.pid, 'SIGCONT');
    } catch {
      // already gone
    }
    await s.kill9().catch(() => undefined);
  }
  for (const s of servers) fs.rmSync(path.dirname(s.configPath), { recursive: true, force: true });
}
