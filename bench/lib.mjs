// Shared pieces of the benchmark: statistics, machine facts, child processes, the load driver and the
// RPC client adapter. Plain Node ESM; everything from ims comes from the compiled dist/.
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const DIST = path.join(REPO_ROOT, 'dist');
export const MAIN_JS = path.join(DIST, 'src/main.js');

export function distUrl(rel) {
  return new URL(`file://${path.join(DIST, rel)}`).href;
}

// ---- statistics ------------------------------------------------------------------------------------

export function median(values) {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

/** Percentile of a sorted Float64Array (nearest rank). */
export function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank];
}

export function round(x, digits = 2) {
  if (!Number.isFinite(x)) return x;
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** Each numeric field of `runs` (objects of one shape) reduced to its median across runs. */
export function medianOf(runs) {
  const out = {};
  for (const key of Object.keys(runs[0])) {
    const vals = runs.map((r) => r[key]);
    out[key] = typeof vals[0] === 'number' ? round(median(vals), 3) : vals[0];
  }
  return out;
}

// ---- machine -----------------------------------------------------------------------------------------

function tryRun(cmd, args) {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return null;
  }
}

export const CLK_TCK = Number(tryRun('getconf', ['CLK_TCK'])) || 100;

export function machineInfo(workDir) {
  const cpus = os.cpus();
  const df = tryRun('df', ['-PT', workDir]);
  const dfLine = df ? df.split('\n')[1]?.split(/\s+/) : null;
  const build = (() => {
    try {
      return JSON.parse(fs.readFileSync(path.join(DIST, 'build-info.json'), 'utf8'));
    } catch {
      return null;
    }
  })();
  return {
    cpuModel: cpus[0]?.model ?? 'unknown',
    cpuCount: cpus.length,
    availableParallelism: os.availableParallelism?.() ?? cpus.length,
    memoryMB: Math.round(os.totalmem() / 2 ** 20),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    v8: process.versions.v8,
    dataFs: dfLine ? { device: dfLine[0], type: dfLine[1] } : null,
    commit: tryRun('git', ['-C', REPO_ROOT, 'rev-parse', '--short', 'HEAD']),
    build,
  };
}

// ---- processes ---------------------------------------------------------------------------------------

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const children = new Set();

/** Kills every child this process started that is still running (on errors and at exit). */
export function killChildren() {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}
process.on('exit', killChildren);

/** A child process whose output is kept, with helpers to wait for a line and for the exit. */
export function startChild(args, { cwd = REPO_ROOT, env = {} } = {}) {
  const proc = spawn(process.execPath, args, {
    cwd,
    env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(proc);
  const lines = [];
  const onData = (chunk) =>
    lines.push(
      ...chunk
        .toString()
        .split('\n')
        .filter((l) => l.length > 0),
    );
  proc.stdout.on('data', onData);
  proc.stderr.on('data', onData);
  const exited = new Promise((resolve) =>
    proc.once('exit', (code, signal) => {
      children.delete(proc);
      resolve({ code, signal });
    }),
  );
  const child = {
    proc,
    lines,
    exited,
    get running() {
      return proc.exitCode === null && proc.signalCode === null;
    },
    async waitFor(re, timeoutMs = 60000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const hit = lines.find((l) => re.test(l));
        if (hit) return hit;
        if (!child.running)
          throw new Error(`${args.join(' ')} exited before printing ${re}:\n${lines.join('\n')}`);
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${re}:\n${lines.join('\n')}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    async stop(signal = 'SIGTERM', timeoutMs = 30000) {
      if (!child.running) return exited;
      proc.kill(signal);
      const t = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
      const r = await exited;
      clearTimeout(t);
      return r;
    },
  };
  return child;
}

/** Runs a child to its end; throws with its output when it fails. */
export async function runChild(args, options) {
  const child = startChild(args, options);
  const { code } = await child.exited;
  if (code !== 0) throw new Error(`${args.join(' ')} failed (exit ${code}):\n${child.lines.join('\n')}`);
  return child.lines;
}

/** Runs a child to its end and parses the last stdout line that is JSON. */
export async function runJsonChild(args, options) {
  const child = startChild(args, options);
  const { code } = await child.exited;
  const jsonLine = [...child.lines].reverse().find((l) => l.startsWith('{'));
  if (code !== 0 || !jsonLine)
    throw new Error(`${args.join(' ')} failed (exit ${code}):\n${child.lines.join('\n')}`);
  return JSON.parse(jsonLine);
}

/** user+system CPU seconds a process has used so far (Linux /proc), or NaN. */
export function processCpuSeconds(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  } catch {
    return NaN;
  }
}

/** Busy CPU seconds of the whole machine so far (all cores, Linux /proc/stat), or NaN. */
export function machineBusySeconds() {
  try {
    const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0];
    const [user, nice, system, , , irq, softirq, steal] = line.split(/\s+/).slice(1).map(Number);
    return (user + nice + system + irq + softirq + steal) / CLK_TCK;
  } catch {
    return NaN;
  }
}

/**
 * Other processes share this machine (builds, test runs): waits until they use less than `maxPct` of one
 * core over a 0.5 s sample, for at most `maxWaitMs`. Returns the last sample's % of one core.
 */
export async function waitForQuiet({ maxPct = 15, maxWaitMs = 60000, log = () => {} } = {}) {
  const deadline = Date.now() + maxWaitMs;
  let warned = false;
  for (;;) {
    const b0 = machineBusySeconds();
    const s0 = process.cpuUsage();
    await new Promise((r) => setTimeout(r, 500));
    const s1 = process.cpuUsage();
    const own = (s1.user - s0.user + s1.system - s0.system) / 1e6;
    const pct = ((machineBusySeconds() - b0 - own) / 0.5) * 100;
    if (!(pct > maxPct) || Date.now() > deadline) return pct;
    if (!warned) log(`waiting for other processes to go quiet (${Math.round(pct)}% of a core busy)`);
    warned = true;
  }
}

/**
 * Starts the real ims server on loopback ports with a fresh config. It listens on port 0 and reports the
 * ports it was given (no window in which another process could take a port picked in advance).
 */
export async function startImsServer({
  workDir,
  dataDir,
  durability = 'sync',
  nodeFlags = [],
  env = {},
  config = {},
}) {
  fs.mkdirSync(workDir, { recursive: true });
  const configPath = path.join(workDir, `ims-${path.basename(dataDir)}.cfg`);
  const extra = Object.entries(config).map(([k, v]) => `${k}=${v}`);
  fs.writeFileSync(
    configPath,
    [
      'rpc_listen=127.0.0.1:0',
      `storage_root=${dataDir}`,
      'sync_listen=127.0.0.1:0',
      'kefu_appid=0',
      `durability=${durability}`,
      ...extra,
    ].join('\n') + '\n',
  );
  const child = startChild([...nodeFlags, MAIN_JS, configPath], { cwd: workDir, env });
  const rpcLine = await child.waitFor(/\brpc listening on/);
  const syncLine = await child.waitFor(/sync listening on/);
  const gorpcLine = config.gorpc_listen ? await child.waitFor(/gorpc listening on/) : null;
  const netrpcLine = config.netrpc_listen ? await child.waitFor(/netrpc listening on/) : null;
  const portOf = (line) => Number(/:(\d+)\s*$/.exec(line)[1]);
  return {
    ...child,
    host: '127.0.0.1',
    port: portOf(rpcLine),
    gorpcPort: gorpcLine ? portOf(gorpcLine) : null,
    netrpcPort: netrpcLine ? portOf(netrpcLine) : null,
    syncAddress: `127.0.0.1:${portOf(syncLine)}`,
  };
}

// ---- RPC client ----------------------------------------------------------------------------------

/**
 * A Node gorpc client (dist/src/rpc/gorpc, the same gob codec the server uses) calling SavePeerMessage
 * as a Go im server does: one call per save, deflate on unless `compress` is false.
 */
export async function createGorpcClient(host, port, { compress = true } = {}) {
  const { GorpcClient } = await import(distUrl('src/rpc/gorpc/gorpc-client.js'));
  const client = await GorpcClient.connect(host, port, { compress });
  return {
    kind: `GorpcClient (dist/src/rpc/gorpc${compress ? ', deflate' : ', plain'})`,
    savePeerMessage: (r) =>
      client.call('SavePeerMessage', {
        AppID: r.appId,
        Uid: r.uid,
        DeviceID: r.deviceId,
        Cmd: r.cmd,
        Raw: r.raw,
      }),
    close: () => client.close(),
  };
}

/**
 * A load client speaking a Go wire as Go im servers do. gorpc (im 2.0): `connections` connections (4),
 * deflate on unless `compress` is false, every call of the process multiplexed over them round-robin.
 * net/rpc (newest im): a pool of `rpc.DialHTTP` clients, each with one call in flight, so the pool grows
 * to the calls in flight. Saves and tail syncs (SyncMessage with nothing new).
 */
export async function createGoWireClient(host, port, { wire, compress = true, connections = 4 }) {
  const pick = (list) => {
    let i = 0;
    return () => list[i++ % list.length];
  };
  const save = (r) => ({ AppID: r.appId, Uid: r.uid, DeviceID: r.deviceId, Cmd: r.cmd, Raw: r.raw });
  const sync = (r) => ({ AppID: r.appId, Uid: r.uid, DeviceID: r.deviceId, LastMsgID: r.lastMsgId });
  if (wire === 'gorpc') {
    const { GorpcClient } = await import(distUrl('src/rpc/gorpc/gorpc-client.js'));
    const list = await Promise.all(
      Array.from({ length: connections }, () => GorpcClient.connect(host, port, { compress })),
    );
    const next = pick(list);
    return {
      kind: `gorpc, ${connections} connections${compress ? ', deflate' : ''}`,
      savePeerMessage: (r) => next().call('SavePeerMessage', save(r)),
      syncMessage: (r) => next().call('SyncMessage', sync(r)),
      close: async () => list.forEach((c) => c.close()),
    };
  }
  const { NetrpcClient } = await import(distUrl('src/rpc/netrpc/netrpc-client.js'));
  const idle = [];
  const all = [];
  // One call in flight per client, as Go im's pool of rpc.Client values is used.
  const withClient = async (f) => {
    let c = idle.pop();
    if (!c) {
      c = await NetrpcClient.connect(host, port);
      all.push(c);
    }
    try {
      return await f(c);
    } finally {
      idle.push(c);
    }
  };
  return {
    kind: 'net/rpc, one call in flight per connection',
    savePeerMessage: (r) => withClient((c) => c.call('SavePeerMessage', save(r))),
    syncMessage: (r) => withClient((c) => c.call('SyncMessage', sync(r))),
    get connections() {
      return all.length;
    },
    close: async () => all.forEach((c) => c.close()),
  };
}

/**
 * The typed client (dist/src/client) when it is built; otherwise Nest's ClientProxy with the pattern
 * names, which is what the typed client wraps.
 */
export async function createClient(host, port, { batchSaves = true } = {}) {
  const clientJs = path.join(DIST, 'src/client/index.js');
  if (fs.existsSync(clientJs)) {
    const { ImsClient } = await import(distUrl('src/client/index.js'));
    const client = new ImsClient({ host, port, timeoutMs: 60000, batchSaves });
    await client.connect();
    return {
      kind: `ImsClient (dist/src/client${batchSaves ? '' : ', batchSaves: false'})`,
      savePeerMessage: (r) => client.savePeerMessage(r),
      syncMessage: (r) => client.syncMessage(r),
      close: () => client.close(),
    };
  }
  const { ClientProxyFactory, Transport } = await import('@nestjs/microservices');
  const { firstValueFrom } = await import('rxjs');
  const proxy = ClientProxyFactory.create({ transport: Transport.TCP, options: { host, port } });
  await proxy.connect();
  const id = (v) =>
    typeof v === 'bigint' ? (v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString()) : v;
  return {
    kind: 'Nest ClientProxy (typed client not built)',
    savePeerMessage: (r) =>
      firstValueFrom(
        proxy.send('SavePeerMessage', {
          appId: id(r.appId),
          uid: id(r.uid),
          deviceId: id(r.deviceId),
          cmd: r.cmd,
          raw: r.raw.toString('base64'),
        }),
      ),
    syncMessage: (r) =>
      firstValueFrom(
        proxy.send('SyncMessage', {
          appId: id(r.appId),
          uid: id(r.uid),
          deviceId: id(r.deviceId),
          lastMsgId: id(r.lastMsgId),
        }),
      ),
    close: async () => proxy.close(),
  };
}

// ---- load driver -------------------------------------------------------------------------------------

/**
 * Keeps `inflight` calls running for `warmupMs` and then `durationMs`; counts and times the calls that
 * finish inside the measured window. `call(n)` gets a running call number. CPU of `serverPid` (if any),
 * of `alsoPids` and of this process over the window are reported as % of one core; `otherCpuPct` is the
 * rest of the machine's.
 */
export async function drive({ call, inflight, durationMs, warmupMs = 0, serverPid = null, alsoPids = [] }) {
  let latencies = new Float64Array(1 << 16);
  let count = 0;
  let completed = 0;
  let errors = 0;
  let firstError = null;
  let n = 0;
  const startAt = performance.now();
  const measureFrom = startAt + warmupMs;
  const measureTo = measureFrom + durationMs;
  let cpuStart = null;
  const takeCpu = () => ({
    server: serverPid ? processCpuSeconds(serverPid) : 0,
    also: alsoPids.map(processCpuSeconds),
    self: process.cpuUsage(),
    machine: machineBusySeconds(),
  });
  async function worker() {
    for (;;) {
      const t0 = performance.now();
      if (t0 >= measureTo) return;
      // Taken by the first call of the window (a timer would never fire while calls resolve as microtasks).
      if (cpuStart === null && t0 >= measureFrom) cpuStart = takeCpu();
      try {
        await call(n++);
      } catch (err) {
        errors++;
        firstError ??= err;
        if (errors > 10) return;
      }
      const t1 = performance.now();
      // Throughput counts every call that completes inside the window (a loaded machine can make each
      // call longer than a short window); latency only those that ran wholly inside it.
      if (t1 >= measureFrom && t1 <= measureTo) completed++;
      if (t0 >= measureFrom && t1 <= measureTo) {
        if (count === latencies.length) {
          const bigger = new Float64Array(latencies.length * 2);
          bigger.set(latencies);
          latencies = bigger;
        }
        latencies[count++] = t1 - t0;
      }
    }
  }
  await Promise.all(Array.from({ length: inflight }, worker));
  const cpuEnd = takeCpu();
  if (firstError) throw new Error(`${errors} call(s) failed; first: ${firstError.message ?? firstError}`);
  const sorted = latencies.subarray(0, count).sort();
  const windowS = durationMs / 1000;
  cpuStart ??= cpuEnd;
  const cpuWindowS = Math.max(1e-3, (performance.now() - Math.max(measureFrom, startAt)) / 1000);
  const selfS = (cpuEnd.self.user - cpuStart.self.user + cpuEnd.self.system - cpuStart.self.system) / 1e6;
  const serverS = cpuEnd.server - cpuStart.server;
  const alsoS = cpuEnd.also.map((c, i) => c - cpuStart.also[i]);
  const alsoTotalS = alsoS.reduce((a, b) => a + b, 0);
  return {
    opsPerSec: completed / windowS,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    calls: count,
    serverCpuPct: serverPid ? (serverS / cpuWindowS) * 100 : NaN,
    clientCpuPct: (selfS / cpuWindowS) * 100,
    /** CPU used by every other process of the machine meanwhile (noise), % of one core. */
    otherCpuPct: Math.max(
      0,
      ((cpuEnd.machine - cpuStart.machine - selfS - serverS - alsoTotalS) / cpuWindowS) * 100,
    ),
    /** CPU of each of `alsoPids` (e.g. a slave), % of one core. */
    alsoCpuPct: alsoS.map((x) => (x / cpuWindowS) * 100),
  };
}

// ---- payloads ------------------------------------------------------------------------------------

export const APP_ID = 7n;
export const CMD_IM = 4;

/** A version-1 IM body (sender, receiver, timestamp, msgid, text), as the im server sends it. */
export function imBody(sender, receiver, text) {
  const content = Buffer.from(text, 'utf8');
  const buf = Buffer.allocUnsafe(24 + content.length);
  buf.writeBigInt64BE(BigInt(sender), 0);
  buf.writeBigInt64BE(BigInt(receiver), 8);
  buf.writeInt32BE(Math.floor(Date.now() / 1000), 16);
  buf.writeInt32BE(0, 20);
  content.copy(buf, 24);
  return buf;
}

/** ~100 bytes of text: a typical chat message body. */
export const SAMPLE_TEXT = JSON.stringify({
  text: 'benchmark message: the quick brown fox jumps over the lazy dog 0123456789',
});
