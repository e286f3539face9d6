// `npm run bench`: starts the real ims server on loopback and measures saves, syncs, index rebuild and
// index memory, next to two ceilings measured in the same run (the disk's and the Nest transport's).
// Every figure is the median of several runs. Results: bench/results/latest.json and latest.md.
//
//   node bench/run.mjs [--quick] [--out DIR] [--profile] [--no-profile] [--keep]
//
// --quick    a smoke run of a few seconds (1 run each, short windows, 100k users instead of 10M)
// --out DIR  where to write the results (default bench/results; --quick writes quick.json/quick.md)
// --profile  always CPU-profile the server and the client during a 64-in-flight sync-durability run
//            (a full run profiles anyway when that run is below 50k saves/s; --no-profile stops it)
// --profile-durability interval   profile with durability=interval instead
// --sync-variant NAME=PRELOAD (repeatable) one more sync server, on its own copy of the folder, with
//            PRELOAD imported (e.g. an older read path); measured in turn with the checked and unchecked ones
// --profile-sync  CPU-profile both sync servers (checked and unchecked reads) during one more window of
//            full syncs at 64 in flight; profiles and summaries in OUT/sync-profiles/
// --keep     keep the temporary data folders
// --whatif L what-if changes on the Nest transport, comma-separated: nodelay, cork, batchwrite (see
//            bench/whatif-preload.mjs); preloaded into the server, the echo server and this client
// --inflights 16,64  in-flight levels for saves and ceilings (default 1,16,64)
// --runs N   runs per figure (default 3; the median is reported)
// --no-whatif a full run also measures transport and saves at 16 and 64 in flight under --whatif nodelay
//            and batchwrite (each in a child run); this skips that
// --only a,b run only these sections (disk, engine, framing, transport, saves, gowire, replicated, sync,
//            rebuild, memory, queues)
import * as fs from 'node:fs';
import fsModule from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { Session } from 'node:inspector';
import {
  APP_ID,
  CMD_IM,
  REPO_ROOT,
  SAMPLE_TEXT,
  createClient,
  createGoWireClient,
  createGorpcClient,
  distUrl,
  drive,
  freePort,
  imBody,
  killChildren,
  machineInfo,
  median,
  medianOf,
  round,
  runChild,
  runJsonChild,
  startChild,
  startImsServer,
  waitForQuiet,
} from './lib.mjs';
import { summarizeProfile } from './profile-summary.mjs';
import { queueBench } from './queues.mjs';

const args = process.argv.slice(2);
const flag = (name) => args.includes(name);
const option = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const QUICK = flag('--quick');
const OUT_DIR = path.resolve(option('--out') ?? path.join(REPO_ROOT, 'bench/results'));
const ONLY = option('--only')?.split(',') ?? null;
const OUT_NAME = ONLY || option('--whatif') ? 'partial' : QUICK ? 'quick' : 'latest';
const want = (section) => !ONLY || ONLY.includes(section);
const WHATIF = option('--whatif') ?? '';
const SYNC_VARIANTS = args.flatMap((a, i) => (a === '--sync-variant' ? [args[i + 1]] : []));
const WHATIF_PRELOAD = path.join(REPO_ROOT, 'bench/whatif-preload.mjs');
if (WHATIF) {
  process.env.IMS_BENCH_WHATIF = WHATIF;
  await import(WHATIF_PRELOAD);
}
const preloadFlags = WHATIF ? ['--import', WHATIF_PRELOAD] : [];

const SETTINGS = QUICK
  ? {
      runs: 1,
      durationMs: 300,
      warmupMs: 100,
      inflights: [1, 16, 64],
      syncUsers: 20,
      syncMessagesPerUser: 100,
      rebuildBytes: 8 * 2 ** 20,
      memoryUsers: 100_000,
      queueSizes: [1_000, 10_000],
      profileMs: flag('--profile') ? 2000 : 0,
    }
  : {
      runs: 3,
      durationMs: 2000,
      warmupMs: 500,
      inflights: [1, 16, 64],
      syncUsers: 200,
      syncMessagesPerUser: 100,
      rebuildBytes: 320 * 2 ** 20,
      memoryUsers: 10_000_000,
      queueSizes: [10_000, 100_000, 1_000_000],
      profileMs: 4000,
    };

if (option('--inflights')) SETTINGS.inflights = option('--inflights').split(',').map(Number);
if (option('--runs')) SETTINGS.runs = Number(option('--runs'));

const TARGETS = {
  savesPerSecSync64: 54_000,
  fullSyncsPerSec64: 1_300,
  fullSyncP99Ms64: 256,
  tailSyncsPerSec64: 12_000,
  rebuildMBps: 200,
  rssMBFor10MUsers: 600,
  checkedOfUnchecked: 0.9,
};

// Counts fdatasync calls made in this process (the disk ceiling and the engine alone), to report the
// group size: saves per fdatasync.
let fdatasyncCalls = 0;
const fdatasync = fsModule.fdatasync;
fsModule.fdatasync = function (...a) {
  fdatasyncCalls++;
  return fdatasync.apply(this, a);
};
syncBuiltinESMExports();

/** Adds fdatasyncs/s and saves per fdatasync over a drive() of the current settings. */
async function withFsyncCount(run) {
  const before = fdatasyncCalls;
  const r = await run();
  const perSec = (fdatasyncCalls - before) / ((SETTINGS.warmupMs + SETTINGS.durationMs) / 1000);
  return { ...r, fsyncsPerSec: perSec, savesPerFsync: perSec > 0 ? r.opsPerSec / perSec : 0 };
}

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'ims-bench-'));
const log = (...a) => console.error(`[bench ${((performance.now() - T0) / 1000).toFixed(1)}s]`, ...a);
const T0 = performance.now();

const { MessageStore } = await import(distUrl('src/storage/message-store.js'));
const { encodeRecord, recordSize } = await import(distUrl('src/format/record.js'));
const { OFFLINE_V2_BODY_SIZE } = await import(distUrl('src/format/bodies.js'));
const { PEER_INDEX_ENTRY_SIZE } = await import(distUrl('src/format/index-file.js'));

const body = imBody(1001, 2002, SAMPLE_TEXT);
const uidOf = (n) => BigInt(10_000 + (n % 10_000));

async function repeat(fn) {
  const runs = [];
  for (let r = 0; r < SETTINGS.runs; r++) {
    if (!QUICK) await waitForQuiet({ log, maxWaitMs: 20000 });
    runs.push(await fn(r));
  }
  return { ...medianOf(runs), runs: runs.length };
}

// ---- 2a. disk ceiling: a bare loop appending the same records with the same fsync grouping --------

/**
 * `inflight` producers each append a message record and its queue entry (one write, as the engine
 * commits a save) and, with sync durability, wait for the fdatasync that covers them; one fdatasync
 * at a time serves every producer that wrote before it started (the engine's group commit).
 */
async function diskCeiling(inflight, durability, runNo) {
  const file = path.join(work, `disk-${durability}-${inflight}-${runNo}`);
  const fd = fs.openSync(file, 'w');
  const msgRecord = encodeRecord({ cmd: CMD_IM, seq: 0, version: 1, flag: 0, body });
  const entryRecord = encodeRecord({
    cmd: 250,
    seq: 0,
    version: 1,
    flag: 0,
    body: Buffer.alloc(OFFLINE_V2_BODY_SIZE, 1),
  });
  const pair = msgRecord.length + entryRecord.length;
  const staging = Buffer.allocUnsafe(pair);
  let end = 32;
  fs.writeSync(fd, Buffer.alloc(32), 0, 32, 0);
  let durable = end;
  let waiters = [];
  let syncing = false;
  const syncLoop = async () => {
    syncing = true;
    while (waiters.length > 0) {
      const target = end;
      await new Promise((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve())));
      durable = target;
      const pending = [];
      for (const w of waiters) {
        if (w.id <= durable) w.resolve();
        else pending.push(w);
      }
      waiters = pending;
    }
    syncing = false;
  };
  const append = () => {
    msgRecord.copy(staging, 0);
    entryRecord.copy(staging, msgRecord.length);
    fs.writeSync(fd, staging, 0, pair, end);
    end += pair;
    return end;
  };
  let lastSync = performance.now();
  const call =
    durability === 'sync'
      ? (n) => {
          const id = append(n);
          if (id <= durable) return undefined;
          return new Promise((resolve) => {
            waiters.push({ id, resolve });
            if (!syncing) void syncLoop();
          });
        }
      : async () => {
          append();
          // The interval mode's once-a-second fdatasync, run inline as a bare loop would.
          if (performance.now() - lastSync >= 1000) {
            fs.fdatasyncSync(fd);
            lastSync = performance.now();
          }
        };
  const r = await drive({ call, inflight, durationMs: SETTINGS.durationMs, warmupMs: SETTINGS.warmupMs });
  fs.closeSync(fd);
  fs.rmSync(file, { force: true });
  return {
    opsPerSec: r.opsPerSec,
    p50Ms: r.p50Ms,
    p99Ms: r.p99Ms,
    cpuPct: r.clientCpuPct,
    otherCpuPct: r.otherCpuPct,
    bytesPerSave: pair,
  };
}

// ---- 2b. engine alone: MessageStore in this process (no Nest, no RPC) --------------------------------

async function engineCeiling(inflight, durability, runNo, queueFormat = 'v2') {
  const root = path.join(work, `engine-${durability}-${inflight}-${runNo}-${queueFormat}`);
  const store = MessageStore.open({ root, queueFormat });
  const call =
    durability === 'sync'
      ? (n) => {
          store.savePeerMessage(APP_ID, uidOf(n), 1n, CMD_IM, body);
          return store.whenDurable();
        }
      : async (n) => {
          store.savePeerMessage(APP_ID, uidOf(n), 1n, CMD_IM, body);
        };
  const flusher = durability === 'interval' ? setInterval(() => void store.flush(), 1000) : null;
  const r = await drive({ call, inflight, durationMs: SETTINGS.durationMs, warmupMs: SETTINGS.warmupMs });
  if (flusher) clearInterval(flusher);
  await store.close({ saveIndex: false });
  fs.rmSync(root, { recursive: true, force: true });
  return {
    opsPerSec: r.opsPerSec,
    p50Ms: r.p50Ms,
    p99Ms: r.p99Ms,
    cpuPct: r.clientCpuPct,
    otherCpuPct: r.otherCpuPct,
  };
}

// ---- 2c. transport ceiling: a Nest TCP handler that stores nothing ------------------------------------

async function startEcho() {
  const port = await freePort();
  const child = startChild([...preloadFlags, path.join(REPO_ROOT, 'bench/echo-server.mjs'), String(port)]);
  await child.waitFor(/echo listening/);
  return { ...child, host: '127.0.0.1', port };
}

function saveCall(client) {
  return (n) =>
    client.savePeerMessage({ appId: APP_ID, uid: uidOf(n), deviceId: 1n, cmd: CMD_IM, raw: body });
}

function measureSaves(server, client, inflight) {
  return measureCalls(server, saveCall(client), inflight);
}

/**
 * One measured window of `call` against a server process: throughput, latency and CPU (with `slave`, its
 * CPU too, left out of the other processes' figure).
 */
async function measureCalls(server, call, inflight, slave = null) {
  const r = await drive({
    call,
    inflight,
    durationMs: SETTINGS.durationMs,
    warmupMs: SETTINGS.warmupMs,
    serverPid: server.proc.pid,
    alsoPids: slave ? [slave.proc.pid] : [],
  });
  return {
    opsPerSec: r.opsPerSec,
    p50Ms: r.p50Ms,
    p99Ms: r.p99Ms,
    serverCpuPct: r.serverCpuPct,
    ...(slave ? { slaveCpuPct: r.alsoCpuPct[0] } : {}),
    clientCpuPct: r.clientCpuPct,
    otherCpuPct: r.otherCpuPct,
  };
}

/**
 * Saves at 64 in flight on a master with min_insync_replicas=1 and one ims slave on this machine: each
 * save is acknowledged once it is on both disks. Both processes share the 2 cores with the client.
 */
async function replicatedSaves() {
  const master = await startImsServer({
    workDir: work,
    dataDir: path.join(work, 'repl-master'),
    config: { min_insync_replicas: 1 },
  });
  const slave = await startImsServer({
    workDir: work,
    dataDir: path.join(work, 'repl-slave'),
    config: { master_address: master.syncAddress },
  });
  try {
    const client = await createClient(master.host, master.port);
    // Saves fail until the slave has joined the in-sync set.
    const deadline = Date.now() + 30000;
    for (;;) {
      try {
        await saveCall(client)(0);
        break;
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    const r = await repeat(() => measureCalls(master, saveCall(client), 64, slave));
    await client.close();
    return r;
  } finally {
    await slave.stop();
    await master.stop();
    for (const d of ['repl-master', 'repl-slave'])
      fs.rmSync(path.join(work, d), { recursive: true, force: true });
  }
}

// ---- Nest TCP framing cost, in isolation ------------------------------------------------------------------

/** µs per message that Nest's JsonSocket spends framing + JSON for one SavePeerMessage request and reply. */
async function framingCost() {
  const { JsonSocket } = await import('@nestjs/microservices/helpers/json-socket.js');
  const { EventEmitter } = await import('node:events');
  const fake = new EventEmitter();
  fake.writableLength = 0;
  let received = 0;
  fake.on('message', () => received++);
  const sock = new JsonSocket(fake, { incompleteMessageTimeout: 0 });
  const request = {
    pattern: 'SavePeerMessage',
    data: { appId: 7, uid: 12345, deviceId: 1, cmd: CMD_IM, raw: body.toString('base64') },
    id: 'a1b2c3d4-e5f6-4a5b-8c7d-0123456789ab',
  };
  const reply = {
    err: null,
    response: { msgId: 123456789, prevMsgId: 123456000 },
    isDisposed: true,
    id: request.id,
  };
  const batch = 64;
  const n = batch * (QUICK ? 300 : 3000);
  const t0 = performance.now();
  for (let i = 0; i < n; i += batch) {
    let chunk = '';
    for (let j = 0; j < batch; j++) chunk += sock.formatMessageData(j & 1 ? reply : request);
    sock.handleData(Buffer.from(chunk, 'utf8'));
  }
  const us = ((performance.now() - t0) * 1000) / n;
  if (received !== n) throw new Error(`framing bench decoded ${received} of ${n} messages`);
  return {
    usPerMessage: round(us, 3),
    requestBytes: Buffer.byteLength(sock.formatMessageData(request)),
    replyBytes: Buffer.byteLength(sock.formatMessageData(reply)),
    note: 'JSON.stringify + length prefix + utf8 encode + StringDecoder + parse, 64 frames per read; a call costs one request and one reply on each side',
  };
}

// ---- 3. SyncMessage ------------------------------------------------------------------------------------------

async function syncBench() {
  const dataDir = path.join(work, 'sync-data');
  const uncheckedDir = path.join(work, 'sync-data-unchecked');
  const filler = await startImsServer({
    workDir: work,
    dataDir,
    durability: 'sync',
    nodeFlags: preloadFlags,
  });
  const users = SETTINGS.syncUsers;
  const per = SETTINGS.syncMessagesPerUser;
  const lastTwo = new Map();
  const fillClient = await createClient(filler.host, filler.port);
  try {
    let next = 0;
    const total = users * per;
    // Fill every user's queue with `per` messages, 64 saves in flight.
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        for (;;) {
          const n = next++;
          if (n >= total) return;
          const uid = BigInt(500_000 + (n % users));
          const r = await fillClient.savePeerMessage({
            appId: APP_ID,
            uid,
            deviceId: 1n,
            cmd: CMD_IM,
            raw: body,
          });
          const ids = lastTwo.get(uid) ?? [];
          ids.push(r.msgId);
          ids.sort((a, b) => a - b);
          lastTwo.set(uid, ids.slice(-2));
        }
      }),
    );
  } finally {
    await fillClient.close();
    await filler.stop();
  }
  // The same folder twice: one server reads it checked (as shipped), the other with the checksum check
  // skipped (bench/unchecked-preload.mjs). Each run measures both, alternating which goes first. Both
  // read a copy made the same way: a file written record by record and its copy read at different
  // speeds (the kernel caches them in pages of different sizes), which alone was a 10-20% difference.
  const checkedDir = path.join(work, 'sync-data-checked');
  fs.cpSync(dataDir, checkedDir, { recursive: true });
  fs.cpSync(dataDir, uncheckedDir, { recursive: true });
  const profileDir = flag('--profile-sync') ? path.join(OUT_DIR, 'sync-profiles') : null;
  const profiling = (name) =>
    profileDir
      ? {
          nodeFlags: ['--import', path.join(REPO_ROOT, 'bench/cpu-profile-preload.mjs')],
          env: { IMS_BENCH_PROFILE_OUT: path.join(profileDir, `${name}.cpuprofile`) },
        }
      : { nodeFlags: [], env: {} };
  const variants = {};
  const everyReadDir = path.join(work, 'sync-data-every-read');
  fs.cpSync(dataDir, everyReadDir, { recursive: true });
  const servers = [
    ['checked', checkedDir, []],
    ['unchecked', uncheckedDir, ['--import', path.join(REPO_ROOT, 'bench/unchecked-preload.mjs')]],
    [
      'everyReadChecked',
      everyReadDir,
      ['--import', path.join(REPO_ROOT, 'bench/every-read-checked-preload.mjs')],
    ],
  ];
  for (const spec of SYNC_VARIANTS) {
    const [name, preload] = spec.split('=');
    const dir = path.join(work, `sync-data-${name}`);
    fs.cpSync(dataDir, dir, { recursive: true });
    servers.push([name, dir, ['--import', path.resolve(preload)]]);
  }
  for (const [name, dir, extra] of servers) {
    const prof = profiling(name);
    const server = await startImsServer({
      workDir: work,
      dataDir: dir,
      durability: 'sync',
      nodeFlags: [...preloadFlags, ...extra, ...prof.nodeFlags],
      env: prof.env,
    });
    variants[name] = { server, client: await createClient(server.host, server.port) };
  }
  try {
    const uidAt = (n) => BigInt(500_000 + (n % users));
    for (const { client } of Object.values(variants)) {
      const check = await client.syncMessage({ appId: APP_ID, uid: uidAt(0), deviceId: 2n, lastMsgId: 0 });
      if (check.messages.length !== per)
        throw new Error(`full sync returned ${check.messages.length}, expected ${per}`);
      const tailCheck = await client.syncMessage({
        appId: APP_ID,
        uid: uidAt(0),
        deviceId: 2n,
        lastMsgId: lastTwo.get(uidAt(0))[0],
      });
      if (tailCheck.messages.length !== 1)
        throw new Error(`tail sync returned ${tailCheck.messages.length}, expected 1`);
    }
    const calls = (client) => ({
      full: (n) => client.syncMessage({ appId: APP_ID, uid: uidAt(n), deviceId: 2n, lastMsgId: 0 }),
      tail: (n) =>
        client.syncMessage({
          appId: APP_ID,
          uid: uidAt(n),
          deviceId: 2n,
          lastMsgId: lastTwo.get(uidAt(n))[0],
        }),
    });
    const out = { messagesPerFullSync: per, users, unchecked: {}, checkedOfUnchecked: {}, variants: {} };
    for (const name of ['full', 'tail']) {
      for (const inflight of [1, 64]) {
        log(`sync ${name} ${inflight} in flight (checked and unchecked reads)`);
        const names = Object.keys(variants);
        const runs = Object.fromEntries(names.map((v) => [v, []]));
        for (let r = 0; r < SETTINGS.runs; r++) {
          const order = r % 2 === 0 ? names : names.toReversed();
          for (const v of order) {
            if (!QUICK) await waitForQuiet({ log, maxWaitMs: 20000 });
            const { server, client } = variants[v];
            const m = await measureCalls(server, calls(client)[name], inflight);
            // Server CPU per call: unlike ops/s, barely moved by other processes taking the cores.
            runs[v].push({ ...m, serverCpuUsPerCall: (m.serverCpuPct / 100 / m.opsPerSec) * 1e6 });
          }
        }
        const key = `${name}_${inflight}`;
        out[key] = { ...medianOf(runs.checked), runs: runs.checked.length };
        out.unchecked[key] = { ...medianOf(runs.unchecked), runs: runs.unchecked.length };
        out.checkedOfUnchecked[key] = {
          ofMedians: ratio(out[key].opsPerSec, out.unchecked[key].opsPerSec),
          perRun: runs.checked.map((c, i) => ratio(c.opsPerSec, runs.unchecked[i].opsPerSec)),
          // Each run's pair is measured back to back: the median of their ratios resists the machine's noise.
          medianPerRun: ratio(
            median(runs.checked.map((c, i) => c.opsPerSec / runs.unchecked[i].opsPerSec)),
            1,
          ),
          // unchecked ÷ checked server CPU per call: the throughput ratio a server-bound run would show
          cpuPerCall: ratio(out.unchecked[key].serverCpuUsPerCall, out[key].serverCpuUsPerCall),
          cpuPerCallPerRun: runs.checked.map((c, i) =>
            ratio(runs.unchecked[i].serverCpuUsPerCall, c.serverCpuUsPerCall),
          ),
        };
        for (const v of names.slice(2)) {
          const m = { ...medianOf(runs[v]), runs: runs[v].length };
          out.variants[v] ??= {};
          out.variants[v][key] = {
            ...m,
            ofUnchecked: ratio(m.opsPerSec, out.unchecked[key].opsPerSec),
            perRun: runs[v].map((c, i) => ratio(c.opsPerSec, runs.unchecked[i].opsPerSec)),
            medianPerRun: ratio(median(runs[v].map((c, i) => c.opsPerSec / runs.unchecked[i].opsPerSec)), 1),
            cpuPerCall: ratio(out.unchecked[key].serverCpuUsPerCall, m.serverCpuUsPerCall),
          };
        }
      }
    }
    if (profileDir) {
      // One more full-sync window at 64 in flight per server, profiled (bench/cpu-profile-preload.mjs).
      fs.mkdirSync(profileDir, { recursive: true });
      out.profiles = {};
      for (const [v, { server, client }] of Object.entries(variants)) {
        log(`profiling the ${v} server: full syncs, 64 in flight`);
        await waitForQuiet({ log, maxWaitMs: 20000 });
        server.proc.kill('SIGWINCH');
        await new Promise((r) => setTimeout(r, 100));
        const r = await measureCalls(server, calls(client).full, 64);
        server.proc.kill('SIGUSR2');
        await server.waitFor(/cpu profile written/);
        const file = path.join(profileDir, `${v}.cpuprofile`);
        out.profiles[v] = {
          opsPerSec: round(r.opsPerSec),
          file,
          summary: summarizeProfile(JSON.parse(fs.readFileSync(file, 'utf8')), 25),
        };
      }
    }
    return out;
  } finally {
    for (const { server, client } of Object.values(variants)) {
      await client.close();
      await server.stop();
    }
  }
}

// ---- 4. index rebuild ------------------------------------------------------------------------------------------

async function rebuildBench() {
  const root = path.join(work, 'rebuild-data');
  const store = MessageStore.open({ root });
  const pair = recordSize(body.length) + recordSize(OFFLINE_V2_BODY_SIZE);
  const saves = Math.ceil(SETTINGS.rebuildBytes / pair);
  for (let i = 0; i < saves; i++)
    store.savePeerMessage(APP_ID, BigInt(1_000_000 + (i % 100_000)), 1n, CMD_IM, body);
  await store.close();
  for (const f of ['peer_index', 'group_index', 'index_state'])
    fs.rmSync(path.join(root, f), { force: true });
  const bytesOnDisk = fs.readdirSync(root).reduce((s, f) => s + fs.statSync(path.join(root, f)).size, 0);
  log(`rebuild: ${round(bytesOnDisk / 2 ** 20, 1)} MB in ${fs.readdirSync(root).length} files`);
  const result = await repeat(async () => {
    const r = await runJsonChild([path.join(REPO_ROOT, 'bench/rebuild-child.mjs'), root]);
    if (r.index !== 'rebuilt') throw new Error(`expected a rebuild, got index ${r.index}`);
    return {
      mbPerSec: r.bytesScanned / 2 ** 20 / (r.elapsedMs / 1000),
      bytesScanned: r.bytesScanned,
      recordsScanned: r.recordsScanned,
      elapsedMs: r.elapsedMs,
      users: r.peerEntries,
    };
  });
  let profile;
  if (flag('--profile') || (!QUICK && !flag('--no-profile') && result.mbPerSec < TARGETS.rebuildMBps)) {
    // The child exits normally, so --cpu-prof writes its profile.
    const dir = path.join(work, 'rebuild-profile');
    await runJsonChild([
      '--cpu-prof',
      '--cpu-prof-dir',
      dir,
      path.join(REPO_ROOT, 'bench/rebuild-child.mjs'),
      root,
    ]);
    const file = fs.readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
    profile = summarizeProfile(JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8')), 15);
  }
  fs.rmSync(root, { recursive: true, force: true });
  return {
    ...result,
    note: 'page cache warm (the folder was just written); a cold read is bounded by the disk',
    profile,
  };
}

// ---- 5. memory of a big peer index ---------------------------------------------------------------------------

async function memoryBench() {
  const root = path.join(work, 'memory-data');
  const users = SETTINGS.memoryUsers;
  // A real folder with one saved message, whose queue entry every synthetic user's index entry points at.
  const store = MessageStore.open({ root });
  store.savePeerMessage(APP_ID, 1n, 1n, CMD_IM, body);
  const entryId = store.peerHead(APP_ID, 1n)[0];
  await store.close();
  const state = JSON.parse(fs.readFileSync(path.join(root, 'index_state'), 'utf8'));
  const fd = fs.openSync(path.join(root, 'peer_index'), 'w');
  const perChunk = 1 << 20;
  const chunk = Buffer.alloc(perChunk * PEER_INDEX_ENTRY_SIZE);
  for (let start = 0; start < users; start += perChunk) {
    const n = Math.min(perChunk, users - start);
    for (let i = 0; i < n; i++) {
      const off = i * PEER_INDEX_ENTRY_SIZE;
      chunk.writeBigUInt64BE(APP_ID, off);
      chunk.writeBigUInt64BE(BigInt(start + i + 1), off + 8);
      chunk.writeBigUInt64BE(BigInt(entryId), off + 16);
      chunk.writeBigUInt64BE(BigInt(entryId), off + 24);
    }
    fs.writeSync(fd, chunk, 0, n * PEER_INDEX_ENTRY_SIZE);
  }
  fs.closeSync(fd);
  fs.writeFileSync(path.join(root, 'index_state'), JSON.stringify({ ...state, peerEntries: users }) + '\n');
  const result = await repeat(async () => {
    const r = await runJsonChild(['--expose-gc', path.join(REPO_ROOT, 'bench/memory-child.mjs'), root]);
    if (r.users !== users || r.index !== 'loaded')
      throw new Error(`memory child loaded ${r.users} users (index ${r.index})`);
    const MB = 2 ** 20;
    return {
      rssMB: r.after.rss / MB,
      heapUsedMB: r.after.heapUsed / MB,
      arrayBuffersMB: r.after.arrayBuffers / MB,
      peakRssMB: r.maxRssBytes / MB,
      baselineRssMB: r.before.rss / MB,
      bytesPerUser: (r.after.rss - r.before.rss) / users,
      tableBytesPerUser: (r.indexBytes.peer + r.indexBytes.group) / users,
      loadMs: r.loadMs,
    };
  });
  fs.rmSync(root, { recursive: true, force: true });
  return { users, indexFileMB: round((users * PEER_INDEX_ENTRY_SIZE) / 2 ** 20, 1), ...result };
}

// ---- profiling ---------------------------------------------------------------------------------------------

async function profileSaves(durability = option('--profile-durability') ?? 'sync') {
  const dataDir = path.join(work, 'profile-data');
  const profileFile = path.join(work, 'server.cpuprofile');
  const server = await startImsServer({
    workDir: work,
    dataDir,
    durability,
    nodeFlags: [...preloadFlags, '--import', path.join(REPO_ROOT, 'bench/cpu-profile-preload.mjs')],
    env: { IMS_BENCH_PROFILE_OUT: profileFile },
  });
  const client = await createClient(server.host, server.port);
  const session = new Session();
  session.connect();
  const post = (m, p = {}) => new Promise((res, rej) => session.post(m, p, (e, r) => (e ? rej(e) : res(r))));
  try {
    await drive({ call: saveCall(client), inflight: 64, durationMs: 1000 });
    await post('Profiler.enable');
    await post('Profiler.setSamplingInterval', { interval: 200 });
    server.proc.kill('SIGWINCH');
    await post('Profiler.start');
    const r = await drive({
      call: saveCall(client),
      inflight: 64,
      durationMs: SETTINGS.profileMs,
      serverPid: server.proc.pid,
    });
    const { profile: clientProfile } = await post('Profiler.stop');
    server.proc.kill('SIGUSR2');
    await server.waitFor(/cpu profile written/);
    const serverProfile = JSON.parse(fs.readFileSync(profileFile, 'utf8'));
    fs.mkdirSync(OUT_DIR, { recursive: true });
    return {
      during: {
        opsPerSec: round(r.opsPerSec),
        serverCpuPct: round(r.serverCpuPct),
        clientCpuPct: round(r.clientCpuPct),
      },
      server: summarizeProfile(serverProfile, 20),
      client: summarizeProfile(clientProfile, 12),
    };
  } finally {
    session.disconnect();
    await client.close();
    await server.stop();
  }
}

// ---- report ----------------------------------------------------------------------------------------------

// ---- Go wires: gorpc and net/rpc as Go im servers call them, beside the Nest transport ---------------

/**
 * Saves and tail syncs at 64 in flight over the two Go wires, as Go im servers make them: gorpc over 4
 * connections with deflate (im 2.0), net/rpc over a pool of connections with one call in flight each
 * (newest im). Beside them, on the same server and interleaved with them run by run, the Nest transport
 * with one call per save (the baseline every ratio is to) and with ImsClient's batching. Ratios only:
 * this machine's absolute figures move with whatever else runs on it.
 */
async function goWireBench() {
  const out = { sync: {}, interval: {} };
  const k = 64;
  for (const d of ['sync', 'interval']) {
    const server = await startImsServer({
      workDir: work,
      dataDir: path.join(work, `gowire-${d}`),
      durability: d,
      nodeFlags: preloadFlags,
      config: { gorpc_listen: '127.0.0.1:0', netrpc_listen: '127.0.0.1:0' },
    });
    try {
      const clients = {
        nest: await createClient(server.host, server.port, { batchSaves: false }),
        nestBatched: await createClient(server.host, server.port),
        gorpcDeflate: await createGoWireClient(server.host, server.gorpcPort, { wire: 'gorpc' }),
        gorpcPlain: await createGoWireClient(server.host, server.gorpcPort, {
          wire: 'gorpc',
          compress: false,
        }),
        netrpc: await createGoWireClient(server.host, server.netrpcPort, { wire: 'netrpc' }),
      };
      // Users whose queues hold one message, synced from past it: the tail sync (nothing new).
      const tailCall = (c) => (n) =>
        c.syncMessage({ appId: APP_ID, uid: uidOf(n), deviceId: 1n, lastMsgId: 2 ** 52 });
      // Warm-up, unmeasured: every connection (net/rpc's pool too) open and the code paths compiled.
      for (const c of Object.values(clients)) {
        await drive({ call: saveCall(c), inflight: k, durationMs: SETTINGS.warmupMs * 2 });
        await drive({ call: tailCall(c), inflight: k, durationMs: SETTINGS.warmupMs });
      }
      const runs = {};
      for (let r = 0; r < SETTINGS.runs; r++) {
        if (!QUICK) await waitForQuiet({ log, maxWaitMs: 20000 });
        for (const [name, c] of Object.entries(clients)) {
          log(`go wires ${d}: saves over ${name} (run ${r + 1})`);
          (runs[`saves_${name}`] ??= []).push(await measureCalls(server, saveCall(c), k));
          if (name === 'nestBatched' || name === 'gorpcPlain' || d !== 'sync') continue;
          log(`go wires ${d}: tail syncs over ${name} (run ${r + 1})`);
          (runs[`tail_${name}`] ??= []).push(await measureCalls(server, tailCall(c), k));
        }
      }
      for (const [key, list] of Object.entries(runs)) out[d][key] = { ...medianOf(list), runs: list.length };
      out.clients = Object.fromEntries(Object.entries(clients).map(([n, c]) => [n, c.kind]));
      for (const c of Object.values(clients)) await c.close();
    } finally {
      await server.stop();
    }
    fs.rmSync(path.join(work, `gowire-${d}`), { recursive: true, force: true });
  }
  // Each figure as a ratio to the Nest transport's, one call per save, of the same runs.
  out.ratios = {};
  for (const d of ['sync', 'interval']) {
    for (const [key, v] of Object.entries(out[d])) {
      const base = out[d][key.startsWith('tail_') ? 'tail_nest' : 'saves_nest'];
      out.ratios[`${d}_${key}`] = {
        ofNestSingle: ratio(v.opsPerSec, base.opsPerSec),
        cpuPerCallUs: round((v.serverCpuPct / 100 / v.opsPerSec) * 1e6, 1),
      };
    }
  }
  return out;
}

function goWireMarkdown(g, disk) {
  const L = [];
  L.push('');
  L.push(
    '**The Go wires** at 64 in flight, on one server, interleaved run by run with the Nest transport ' +
      '(`ofNest`: ratio to the Nest transport with one call per save, or per sync, in the same runs; ' +
      '`ofDisk`: to the disk ceiling of this run; server CPU per call in µs)',
  );
  L.push('');
  L.push('| durability | calls | client | ops/s | p50 ms | µs CPU per call | ofNest | ofDisk |');
  L.push('|---|---|---|---:|---:|---:|---:|---:|');
  for (const d of ['sync', 'interval']) {
    for (const [key, v] of Object.entries(g[d])) {
      const r = g.ratios[`${d}_${key}`];
      const [what, client] = key.split('_');
      const dk = what === 'saves' ? disk?.[d]?.[64]?.opsPerSec : undefined;
      L.push(
        `| ${d} | ${what} | ${g.clients[client]} | ${fmt(v.opsPerSec)} | ${fmt(v.p50Ms, 2)} | ${fmt(r.cpuPerCallUs, 1)} | ${fmt(r.ofNestSingle, 2)} | ${dk ? fmt(ratio(v.opsPerSec, dk), 2) : '–'} |`,
      );
    }
  }
  return L;
}

function fmt(x, digits = 0) {
  if (!Number.isFinite(x)) return '–';
  return x.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

function markdown(res) {
  const m = res.machine;
  const L = [];
  L.push(`### ims benchmark (${res.quick ? 'quick smoke run' : 'full run'}, ${res.date})`);
  L.push('');
  L.push(
    `Machine: ${m.cpuCount} × ${m.cpuModel}, ${fmt(m.memoryMB / 1024, 1)} GB RAM, ${m.os}, Node ${m.node}, ` +
      `data on ${m.dataFs ? `${m.dataFs.type} (${m.dataFs.device})` : '?'}; client, server and ceilings on the same machine. ` +
      `Commit ${m.commit ?? '?'}. Median of ${res.settings.runs} run(s), ${res.settings.durationMs} ms windows after ` +
      `${res.settings.warmupMs} ms warm-up. Client: ${res.client}.`,
  );
  L.push('');
  L.push(
    '**SavePeerMessage** through ImsClient, which sends the saves its callers make in the same tick as one ' +
      'SavePeerMessages request (ops/s, p50 / p99 ms)',
  );
  L.push('');
  L.push(
    '| in flight | durability | ims | p50 | p99 | server CPU | client CPU | disk ceiling | ims ÷ disk | transport ceiling | ims ÷ transport | engine alone |',
  );
  L.push('|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const d of ['sync', 'interval']) {
    for (const k of res.settings.inflights) {
      const s = res.saves[d][k];
      const disk = res.ceilings.disk[d][k];
      const tr = res.ceilings.transport[k];
      const eng = res.ceilings.engine[d][k];
      L.push(
        `| ${k} | ${d} | ${fmt(s.opsPerSec)} | ${fmt(s.p50Ms, 2)} | ${fmt(s.p99Ms, 2)} | ${fmt(s.serverCpuPct)}% | ${fmt(s.clientCpuPct)}% | ` +
          `${fmt(disk.opsPerSec)} | ${fmt(s.opsPerSec / disk.opsPerSec, 2)} | ${fmt(tr.opsPerSec)} | ` +
          `${fmt(s.opsPerSec / tr.opsPerSec, 2)} | ${fmt(eng.opsPerSec)} |`,
      );
    }
  }
  L.push('');
  L.push(
    '**SavePeerMessage, one request per save** (ImsClient with `batchSaves: false`, or any plain Nest client; ' +
      'ceiling: the echo handler driven the same way)',
  );
  L.push('');
  L.push('| in flight | durability | ims | p50 | p99 | server CPU | transport ceiling | ims ÷ transport |');
  L.push('|---:|---|---:|---:|---:|---:|---:|---:|');
  for (const d of ['sync', 'interval']) {
    for (const k of res.settings.inflights) {
      const s = res.savesSingle[d][k];
      const tr = res.ceilings.transportSingle[k];
      L.push(
        `| ${k} | ${d} | ${fmt(s.opsPerSec)} | ${fmt(s.p50Ms, 2)} | ${fmt(s.p99Ms, 2)} | ${fmt(s.serverCpuPct)}% | ` +
          `${fmt(tr.opsPerSec)} | ${fmt(s.opsPerSec / tr.opsPerSec, 2)} |`,
      );
    }
  }
  L.push('');
  if (Object.keys(res.savesGorpc?.sync ?? {}).length > 0) {
    L.push(
      `**SavePeerMessage over gorpc**, the protocol Go im servers speak (${res.gorpcClient}: one call per save, ` +
        'as im makes them), on the same server as the Nest figures above',
    );
    L.push('');
    L.push(
      '| in flight | durability | gorpc | p50 | p99 | server CPU | Nest, one call per save | gorpc ÷ that | Nest, batched | gorpc ÷ that |',
    );
    L.push('|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const d of ['sync', 'interval']) {
      for (const k of res.settings.inflights) {
        const g = res.savesGorpc[d][k];
        const single = res.savesSingle[d][k];
        const batched = res.saves[d][k];
        L.push(
          `| ${k} | ${d} | ${fmt(g.opsPerSec)} | ${fmt(g.p50Ms, 2)} | ${fmt(g.p99Ms, 2)} | ${fmt(g.serverCpuPct)}% | ` +
            `${fmt(single.opsPerSec)} | ${fmt(g.opsPerSec / single.opsPerSec, 2)} | ${fmt(batched.opsPerSec)} | ` +
            `${fmt(g.opsPerSec / batched.opsPerSec, 2)} |`,
        );
      }
    }
    L.push('');
  }
  if (res.replicated) {
    const r = res.replicated;
    L.push(
      `**Replicated saves**, 64 in flight, durability=sync, \`min_insync_replicas=1\` with one ims slave on ` +
        `this machine (each save acknowledged once it is on both disks): ${fmt(r.opsPerSec)}/s, p50 ` +
        `${fmt(r.p50Ms, 1)} ms, p99 ${fmt(r.p99Ms, 1)} ms, master CPU ${fmt(r.serverCpuPct)}%` +
        (r.slaveCpuPct !== undefined ? `, slave CPU ${fmt(r.slaveCpuPct)}%` : '') +
        (r.ratioToStandalone !== undefined ? `: **${r.ratioToStandalone} × standalone** of this run` : '') +
        ` (other processes: ${fmt(r.otherCpuPct)}% of a core).`,
    );
    L.push('');
  }
  const dk = res.ceilings.disk.sync;
  L.push(
    `Disk ceiling (sync): ${res.settings.inflights
      .map((k) => `${fmt(dk[k].fsyncsPerSec)} fdatasyncs/s, ${fmt(dk[k].savesPerFsync, 1)} saves each`)
      .join(' / ')} at ${res.settings.inflights.join(' / ')} in flight; the bare loop's CPU ` +
      `${res.settings.inflights.map((k) => `${fmt(dk[k].cpuPct)}%`).join(' / ')} is nearly all fdatasync.`,
  );
  L.push('');
  L.push(
    `Transport ceiling: Nest TCP echo handler (same pattern, payload and client), server CPU ${res.settings.inflights
      .map((k) => `${fmt(res.ceilings.transport[k].serverCpuPct)}%`)
      .join(' / ')} at ${res.settings.inflights.join(' / ')} in flight. ` +
      `Nest framing alone (JsonSocket, JSON): ${fmt(res.framing.usPerMessage, 2)} µs per message ` +
      `(request ${res.framing.requestBytes} B, reply ${res.framing.replyBytes} B).`,
  );
  L.push('');
  if (res.whatif) {
    L.push(
      '**What-if at 64 in flight** (not in ims: patches preloaded by bench/whatif-preload.mjs into server, echo ' +
        'server and client). nodelay = TCP_NODELAY; batchwrite = one file write per group commit instead of ' +
        'one per save. ops/s (p99 ms, server CPU)',
    );
    L.push('');
    L.push('| variant | echo | ims sync | ims interval | ims sync, one call per save |');
    L.push('|---|---:|---:|---:|---:|');
    const cell = (f) => (f ? `${fmt(f.opsPerSec)} (${fmt(f.p99Ms, 1)} ms, ${fmt(f.serverCpuPct)}%)` : '–');
    const rows = {
      'as shipped': { transport: res.ceilings.transport, saves: res.saves, savesSingle: res.savesSingle },
      ...res.whatif,
    };
    for (const [name, w] of Object.entries(rows)) {
      L.push(
        `| ${name} | ${cell(w.transport[64])} | ${cell(w.saves.sync[64])} | ${cell(w.saves.interval[64])} | ` +
          `${cell(w.savesSingle?.sync?.[64])} |`,
      );
    }
    L.push('');
  }
  L.push(
    '**SyncMessage** (ops/s, p50 / p99 ms), checked reads as shipped (a record verified in the last ' +
      '30-60 s is not hashed again). Beside them, in the same run and alternating, copies of the same ' +
      'folder read unchecked (bench/unchecked-preload.mjs) and with every read checked ' +
      '(bench/every-read-checked-preload.mjs: what a first read costs). Ratios to unchecked, by ops/s ' +
      '(per run) and by server CPU per call',
  );
  L.push('');
  L.push(
    '| sync | in flight | ops/s | p50 | p99 | server CPU | unchecked ops/s | checked ÷ unchecked (per run) | by CPU per call | every read checked ÷ unchecked | by CPU per call |',
  );
  L.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const name of ['full', 'tail']) {
    for (const k of [1, 64]) {
      const key = `${name}_${k}`;
      const s = res.sync[key];
      const u = res.sync.unchecked?.[key];
      const r = res.sync.checkedOfUnchecked?.[key];
      const e = res.sync.variants?.everyReadChecked?.[key];
      const label = name === 'full' ? `full (${res.sync.messagesPerFullSync} messages)` : 'tail (1 message)';
      L.push(
        `| ${label} | ${k} | ${fmt(s.opsPerSec)} | ${fmt(s.p50Ms, 2)} | ${fmt(s.p99Ms, 2)} | ${fmt(s.serverCpuPct)}% | ` +
          `${u ? fmt(u.opsPerSec) : '–'} | ${r ? `${r.ofMedians}; median pair ${r.medianPerRun} (${r.perRun.join(', ')})` : '–'} | ` +
          `${r?.cpuPerCall ?? '–'} | ${e ? `${e.ofUnchecked}; median pair ${e.medianPerRun}` : '–'} | ${e?.cpuPerCall ?? '–'} |`,
      );
    }
  }
  L.push('');
  const rb = res.rebuild;
  const mem = res.memory;
  L.push('**Start-up and memory**');
  L.push('');
  L.push('| figure | value |');
  L.push('|---|---:|');
  L.push(
    `| index rebuild (${fmt(rb.bytesScanned / 2 ** 20)} MB of blocks, warm cache) | ${fmt(rb.mbPerSec)} MB/s (${fmt(rb.elapsedMs)} ms) |`,
  );
  L.push(
    `| peer index of ${fmt(mem.users)} users: RSS after GC | ${fmt(mem.rssMB)} MB (peak ${fmt(mem.peakRssMB)} MB, Node baseline ${fmt(mem.baselineRssMB)} MB) |`,
  );
  L.push(
    `| same: heap used / array buffers | ${fmt(mem.heapUsedMB, 1)} MB / ${fmt(mem.arrayBuffersMB, 1)} MB |`,
  );
  L.push(
    `| same: bytes per user (RSS growth; table alone) | ${fmt(mem.bytesPerUser, 1)}; ${fmt(mem.tableBytesPerUser, 1)} |`,
  );
  L.push(`| same: load time | ${fmt(mem.loadMs)} ms |`);
  L.push('');
  const q = res.queues;
  L.push('**v4 queues** (queue_format v4, engine alone): one user, from a sync key 100 entries back');
  L.push('');
  L.push('| queue entries | GetNewCount | SyncMessage page (100 messages) | GetNewCount from 0 |');
  L.push('|---:|---:|---:|---:|');
  for (const r of q.rows) {
    L.push(`| ${fmt(r.entries)} | ${r.newCountUs} µs | ${r.syncPageUs} µs | ${r.fullCountUs} µs |`);
  }
  L.push('');
  L.push(
    `Largest / smallest queue: GetNewCount ${q.largestOverSmallest.newCount}×, SyncMessage page ` +
      `${q.largestOverSmallest.syncPage}× (target under 2). Saves at 64 in flight, durability=sync, engine alone: ` +
      `v2 ${fmt(q.saves.v2.opsPerSec)}/s, v4 ${fmt(q.saves.v4.opsPerSec)}/s = ${q.saves.v4OverV2}× (target within 10%).`,
  );
  L.push('');
  const others = [
    ...Object.values(res.saves.sync),
    ...Object.values(res.saves.interval),
    ...Object.values(res.ceilings.transport),
  ].map((f) => f.otherCpuPct);
  L.push(
    `Other processes on the machine used up to ${fmt(Math.max(...others))}% of a core during the RPC windows ` +
      `(load average ${res.loadAverageAtStart.join(' ')} at the start).`,
  );
  L.push('');
  L.push('**Targets** (Go ims on 2 cores acks before fsync; ims with durability=sync)');
  L.push('');
  L.push('| target | ims | met |');
  L.push('|---|---:|---|');
  for (const t of res.targets) L.push(`| ${t.name} | ${t.value} | ${t.met ? 'yes' : '**no**'} |`);
  if (res.profile) {
    L.push('');
    L.push(
      `**Server CPU profile**, 64 in flight, durability=sync (${fmt(res.profile.during.opsPerSec)} saves/s, server CPU ` +
        `${fmt(res.profile.during.serverCpuPct)}%, client CPU ${fmt(res.profile.during.clientCpuPct)}%); % of samples:`,
    );
    L.push('');
    L.push(`areas: ${res.profile.server.areas.map((a) => `${a.fn} ${a.pct}%`).join(', ')}`);
    L.push('');
    L.push(
      `top self: ${res.profile.server.self
        .slice(0, 12)
        .map((a) => `${a.fn} ${a.pct}%`)
        .join('; ')}`,
    );
  }
  if (res.goWire) L.push(...goWireMarkdown(res.goWire, res.ceilings.disk));
  return L.join('\n') + '\n';
}

function targetsOf(res) {
  const s64 = res.saves.sync[64];
  const t = [];
  const add = (name, value, shown, met) => t.push({ name, value: shown, raw: value, met });
  add(
    'saves/s at 64 in flight > 54k (Go 48–54k)',
    s64.opsPerSec,
    fmt(s64.opsPerSec),
    s64.opsPerSec > TARGETS.savesPerSecSync64,
  );
  const qs = res.queues.largestOverSmallest;
  add(
    'v4: GetNewCount and a SyncMessage page, largest / smallest queue < 2',
    Math.max(qs.newCount, qs.syncPage),
    `${qs.newCount}× / ${qs.syncPage}×`,
    qs.newCount < 2 && qs.syncPage < 2,
  );
  add(
    'v4 saves within 10% of v2 (engine alone, 64 in flight, sync)',
    res.queues.saves.v4OverV2,
    `${res.queues.saves.v4OverV2}×`,
    res.queues.saves.v4OverV2 >= 0.9,
  );
  const f = res.sync.full_64;
  add(
    'full syncs/s at 64 in flight > 1.3k',
    f.opsPerSec,
    fmt(f.opsPerSec),
    f.opsPerSec > TARGETS.fullSyncsPerSec64,
  );
  add(
    'full sync p99 at 64 in flight < 256 ms',
    f.p99Ms,
    `${fmt(f.p99Ms, 1)} ms`,
    f.p99Ms < TARGETS.fullSyncP99Ms64,
  );
  const tl = res.sync.tail_64;
  add(
    'tail syncs/s at 64 in flight > 12k',
    tl.opsPerSec,
    fmt(tl.opsPerSec),
    tl.opsPerSec > TARGETS.tailSyncsPerSec64,
  );
  for (const key of ['full_64', 'tail_64']) {
    const r = res.sync.checkedOfUnchecked[key].ofMedians;
    add(
      `${key.startsWith('full') ? 'full' : 'tail'} syncs at 64 in flight, checked reads ≥ 0.9 × unchecked`,
      r,
      `${r} ×`,
      r >= TARGETS.checkedOfUnchecked,
    );
  }
  add(
    'index rebuild ≥ 200 MB/s',
    res.rebuild.mbPerSec,
    `${fmt(res.rebuild.mbPerSec)} MB/s`,
    res.rebuild.mbPerSec >= TARGETS.rebuildMBps,
  );
  const rssFor10M = res.memory.baselineRssMB + (res.memory.bytesPerUser * 10_000_000) / 2 ** 20;
  add(
    '10M users ≤ 600 MB RSS',
    rssFor10M,
    `${fmt(res.memory.users === 10_000_000 ? res.memory.rssMB : rssFor10M)} MB${res.memory.users === 10_000_000 ? '' : ' (extrapolated)'}`,
    (res.memory.users === 10_000_000 ? res.memory.rssMB : rssFor10M) <= TARGETS.rssMBFor10MUsers,
  );
  return t;
}

// ---- main ------------------------------------------------------------------------------------------------

/** a ÷ b to three significant digits (a ratio far below 1 must not round to 0). */
function ratio(a, b) {
  const r = a / b;
  return Number.isFinite(r) ? Number(r.toPrecision(3)) : r;
}

async function main() {
  const res = {
    date: new Date().toISOString(),
    quick: QUICK,
    whatif: WHATIF || null,
    machine: machineInfo(work),
    settings: SETTINGS,
    client: null,
    ceilings: {
      disk: { sync: {}, interval: {} },
      engine: { sync: {}, interval: {} },
      transport: {},
      transportSingle: {},
    },
    saves: { sync: {}, interval: {} },
    savesSingle: { sync: {}, interval: {} },
    savesGorpc: { sync: {}, interval: {} },
  };
  log(`work folder ${work}; ${QUICK ? 'quick' : 'full'} run`);
  res.loadAverageAtStart = os.loadavg().map((x) => round(x, 2));

  for (const d of ['sync', 'interval']) {
    for (const k of SETTINGS.inflights) {
      if (want('disk')) {
        log(`disk ceiling ${d} ${k} in flight`);
        res.ceilings.disk[d][k] = await repeat((r) => withFsyncCount(() => diskCeiling(k, d, r)));
      }
      if (want('engine')) {
        log(`engine alone ${d} ${k} in flight`);
        res.ceilings.engine[d][k] = await repeat((r) => withFsyncCount(() => engineCeiling(k, d, r)));
      }
    }
  }

  if (want('framing')) res.framing = await framingCost();

  if (want('transport')) {
    const echo = await startEcho();
    try {
      const client = await createClient(echo.host, echo.port);
      const single = await createClient(echo.host, echo.port, { batchSaves: false });
      res.client = client.kind;
      for (const k of SETTINGS.inflights) {
        log(`transport ceiling ${k} in flight`);
        res.ceilings.transport[k] = await repeat(() => measureSaves(echo, client, k));
        log(`transport ceiling ${k} in flight, one call per save`);
        res.ceilings.transportSingle[k] = await repeat(() => measureSaves(echo, single, k));
      }
      await client.close();
      await single.close();
    } finally {
      await echo.stop();
    }
  }

  if (want('saves')) {
    for (const d of ['sync', 'interval']) {
      const server = await startImsServer({
        workDir: work,
        dataDir: path.join(work, `saves-${d}`),
        durability: d,
        nodeFlags: preloadFlags,
        config: { gorpc_listen: '127.0.0.1:0' },
      });
      try {
        const client = await createClient(server.host, server.port);
        const single = await createClient(server.host, server.port, { batchSaves: false });
        const gorpc = await createGorpcClient(server.host, server.gorpcPort);
        res.client = client.kind;
        res.gorpcClient = gorpc.kind;
        for (const k of SETTINGS.inflights) {
          log(`ims saves ${d} ${k} in flight`);
          res.saves[d][k] = await repeat(() => measureSaves(server, client, k));
          log(`ims saves ${d} ${k} in flight, one call per save`);
          res.savesSingle[d][k] = await repeat(() => measureSaves(server, single, k));
          log(`ims saves ${d} ${k} in flight over gorpc`);
          res.savesGorpc[d][k] = await repeat(() => measureSaves(server, gorpc, k));
        }
        await client.close();
        await single.close();
        await gorpc.close();
      } finally {
        await server.stop();
      }
      fs.rmSync(path.join(work, `saves-${d}`), { recursive: true, force: true });
    }
  }

  // Too slow for the quick smoke run's budget unless asked for by name (--only gowire).
  if (want('gowire') && (!QUICK || ONLY)) {
    log('Go wires (gorpc, net/rpc) beside the Nest transport, 64 in flight');
    res.goWire = await goWireBench();
  }

  if (want('replicated')) {
    log('ims saves sync 64 in flight, min_insync_replicas=1 with one local ims slave');
    res.replicated = await replicatedSaves();
    const standalone = res.saves.sync[64]?.opsPerSec;
    if (standalone) res.replicated.ratioToStandalone = ratio(res.replicated.opsPerSec, standalone);
  }

  if (want('queues')) {
    res.queues = await queueBench({
      work,
      sizes: SETTINGS.queueSizes,
      durationMs: SETTINGS.durationMs / 2,
      log,
    });
    // Saves through the engine in each format, same run: a v4 queue record is 16 bytes longer.
    res.queues.saves = {};
    for (const f of ['v2', 'v4']) {
      log(`engine alone sync 64 in flight, queue_format ${f}`);
      res.queues.saves[f] = await repeat((r) => engineCeiling(64, 'sync', r, f));
    }
    res.queues.saves.v4OverV2 = ratio(res.queues.saves.v4.opsPerSec, res.queues.saves.v2.opsPerSec);
  }

  if (want('sync')) {
    log('sync');
    res.sync = await syncBench();
  }
  if (want('rebuild')) {
    log('rebuild');
    res.rebuild = await rebuildBench();
  }
  if (want('memory')) {
    log(`memory (${SETTINGS.memoryUsers} users)`);
    res.memory = await memoryBench();
  }

  const wantProfile =
    flag('--profile') ||
    (!QUICK && !flag('--no-profile') && want('saves') && res.saves.sync[64].opsPerSec < 50_000);
  if (wantProfile && SETTINGS.profileMs > 0) {
    log('profiling the server at 64 in flight, durability=sync');
    await waitForQuiet({ log, maxWaitMs: 20000 });
    res.profile = await profileSaves();
  }

  if (!QUICK && !ONLY && !WHATIF && !flag('--no-whatif')) {
    res.whatif = {};
    for (const w of ['nodelay', 'batchwrite']) {
      log(`what-if ${w}`);
      const out = path.join(work, `whatif-${w.replaceAll(',', '-')}`);
      try {
        await runChild([
          path.join(REPO_ROOT, 'bench/run.mjs'),
          '--only',
          'transport,saves',
          '--inflights',
          '16,64',
          '--whatif',
          w,
          '--out',
          out,
        ]);
        const r = JSON.parse(fs.readFileSync(path.join(out, 'partial.json'), 'utf8'));
        res.whatif[w] = { transport: r.ceilings.transport, saves: r.saves, savesSingle: r.savesSingle };
      } catch (err) {
        log(`what-if ${w} failed: ${err.message}`);
        res.whatif[w] = {
          error: err.message,
          transport: {},
          saves: { sync: {}, interval: {} },
          savesSingle: { sync: {}, interval: {} },
        };
      }
    }
  }

  if (ONLY) {
    fs.mkdirSync(OUT_DIR, { recursive: true });
    fs.writeFileSync(path.join(OUT_DIR, `${OUT_NAME}.json`), JSON.stringify(res, null, 2) + '\n');
    console.log(JSON.stringify(res, null, 2));
    return;
  }

  res.ratios = {};
  for (const d of ['sync', 'interval']) {
    for (const k of SETTINGS.inflights) {
      res.ratios[`${d}_${k}`] = {
        ofDisk: ratio(res.saves[d][k].opsPerSec, res.ceilings.disk[d][k].opsPerSec),
        ofTransport: ratio(res.saves[d][k].opsPerSec, res.ceilings.transport[k].opsPerSec),
        ofEngine: ratio(res.saves[d][k].opsPerSec, res.ceilings.engine[d][k].opsPerSec),
        singleOfTransportSingle: ratio(
          res.savesSingle[d][k].opsPerSec,
          res.ceilings.transportSingle[k].opsPerSec,
        ),
      };
    }
  }
  res.targets = targetsOf(res);
  res.loadAverageAtEnd = os.loadavg().map((x) => round(x, 2));
  res.noiseNote =
    'otherCpuPct in each figure is the CPU other processes of the machine used during its window (% of one core)';
  res.elapsedS = round((performance.now() - T0) / 1000, 1);

  fs.mkdirSync(OUT_DIR, { recursive: true });
  const md = markdown(res);
  fs.writeFileSync(path.join(OUT_DIR, `${OUT_NAME}.json`), JSON.stringify(res, null, 2) + '\n');
  fs.writeFileSync(path.join(OUT_DIR, `${OUT_NAME}.md`), md);
  console.log(md);
  log(`results in ${path.join(OUT_DIR, OUT_NAME)}.json/.md (${res.elapsedS} s)`);
}

try {
  await main();
} catch (err) {
  console.error(err);
  process.exitCode = 1;
} finally {
  killChildren();
  if (!flag('--keep')) fs.rmSync(work, { recursive: true, force: true });
}
