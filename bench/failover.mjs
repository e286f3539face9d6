// npm run bench:failover: time from SIGKILL of a shard's master to the first save acknowledged by its
// successor, over N kills (default 10), on one shard of three nodes with min_insync_replicas=1 and 16
// saves in flight through ImsClusterClient. Needs etcd (scripts/ensure-etcd.mjs) and a build.
// Usage: node bench/failover.mjs [--kills N] [--out DIR]
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import {
  APP_ID,
  CMD_IM,
  MAIN_JS,
  REPO_ROOT,
  distUrl,
  freePort,
  imBody,
  killChildren,
  machineInfo,
  median,
  startImsServer,
} from './lib.mjs';

const { values } = parseArgs({ options: { kills: { type: 'string' }, out: { type: 'string' } } });
const KILLS = Number(values.kills ?? 10);
const OUT_DIR = values.out ?? path.join(REPO_ROOT, 'bench/results');
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'ims-failover-'));
const log = (m) => console.error(`[failover] ${m}`);

async function startEtcd() {
  const [client, peer] = [await freePort(), await freePort()];
  const proc = spawn(
    process.env.IMS_ETCD_BIN ?? 'etcd',
    [
      '--name=bench',
      `--data-dir=${path.join(work, 'etcd')}`,
      `--listen-client-urls=http://127.0.0.1:${client}`,
      `--advertise-client-urls=http://127.0.0.1:${client}`,
      `--listen-peer-urls=http://127.0.0.1:${peer}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${peer}`,
      `--initial-cluster=bench=http://127.0.0.1:${peer}`,
      '--logger=zap',
      '--log-level=error',
    ],
    { stdio: 'ignore' },
  );
  for (let i = 0; i < 150; i++) {
    try {
      const res = await fetch(`http://127.0.0.1:${client}/health`);
      if (res.ok) return { proc, endpoint: `127.0.0.1:${client}` };
    } catch {
      // not yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('etcd did not start');
}

async function role(node) {
  try {
    const res = await fetch(`http://${node.http}/summary`);
    return (await res.json()).cluster?.role;
  } catch {
    return null;
  }
}

async function main() {
  const etcd = await startEtcd();
  const init = spawnSync(
    process.execPath,
    [MAIN_JS, 'cluster', 'init', '--etcd', etcd.endpoint, '--cluster', 'bench', '--shards', '1'],
    { encoding: 'utf8' },
  );
  if (init.status !== 0) throw new Error(init.stderr);
  const config = (name) => ({
    etcd_endpoints: etcd.endpoint,
    cluster_name: 'bench',
    node_name: name,
    min_insync_replicas: 1,
    replica_lag_timeout_ms: 2000,
    http_listen_address: '127.0.0.1:0',
  });
  const start = async (name) => {
    const s = await startImsServer({ workDir: work, dataDir: path.join(work, name), config: config(name) });
    const httpLine = await s.waitFor(/http listening on/);
    return { ...s, name, http: /listening on (\S+)/.exec(httpLine)[1] };
  };
  const nodes = [];
  for (const n of ['f1', 'f2', 'f3']) nodes.push(await start(n));
  const { ImsClusterClient } = await import(distUrl('src/client/index.js'));
  const client = new ImsClusterClient({
    etcd: [etcd.endpoint],
    cluster: 'bench',
    timeoutMs: 5000,
    failoverTimeoutMs: 30000,
  });
  await client.connect();
  let lastAck = 0;
  // When the newest acknowledged save had been sent: a reply the old master wrote just before SIGKILL
  // can reach a busy client after it, so only saves sent after the kill measure the successor.
  let lastAckSentAt = 0;
  let acked = 0;
  let stop = false;
  const body = imBody(1n, 2n, 'failover bench');
  const writer = async (w) => {
    while (!stop) {
      try {
        const sentAt = Date.now();
        await client.savePeerMessage({ appId: APP_ID, uid: 1000 + w, deviceId: 1n, cmd: CMD_IM, raw: body });
        lastAck = Date.now();
        lastAckSentAt = Math.max(lastAckSentAt, sentAt);
        acked++;
      } catch {
        await new Promise((r) => setTimeout(r, 10));
      }
    }
  };
  const writers = Array.from({ length: 16 }, (_, w) => writer(w));
  const times = [];
  for (let k = 0; k < KILLS; k++) {
    while (Date.now() - lastAck > 100 || acked === 0) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 1000));
    let master = null;
    while (!master) {
      for (const n of nodes) if ((await role(n)) === 'master') master = n;
      if (!master) await new Promise((r) => setTimeout(r, 50));
    }
    const killedAt = Date.now();
    master.proc.kill('SIGKILL');
    await master.exited;
    while (lastAckSentAt <= killedAt) await new Promise((r) => setTimeout(r, 5));
    times.push(lastAck - killedAt);
    log(`kill ${k + 1}: first acknowledged save on the successor after ${lastAck - killedAt} ms`);
    nodes[nodes.indexOf(master)] = await start(master.name);
  }
  stop = true;
  await Promise.all(writers);
  await client.close();
  for (const n of nodes) n.proc.kill('SIGTERM');
  etcd.proc.kill('SIGTERM');
  const sorted = [...times].sort((a, b) => a - b);
  const res = {
    date: new Date().toISOString(),
    machine: machineInfo(work),
    kills: KILLS,
    leaseTtlS: 3,
    inFlight: 16,
    msToFirstAck: { median: median(sorted), max: sorted[sorted.length - 1], all: times },
    acknowledged: acked,
  };
  fs.mkdirSync(OUT_DIR, { recursive: true });
  fs.writeFileSync(path.join(OUT_DIR, 'failover.json'), JSON.stringify(res, null, 2) + '\n');
  fs.writeFileSync(
    path.join(OUT_DIR, 'failover.md'),
    `### Failover (${res.date})\n\nOne shard of three nodes, min_insync_replicas=1, lease ttl 3 s, 16 saves in flight ` +
      `through ImsClusterClient; the master SIGKILLed ${KILLS} times. Time from the kill to the first save ` +
      `acknowledged by the successor: **median ${res.msToFirstAck.median} ms, max ${res.msToFirstAck.max} ms** ` +
      `(all: ${times.join(', ')} ms).\n`,
  );
  console.log(JSON.stringify(res.msToFirstAck));
}

try {
  await main();
} finally {
  killChildren();
  fs.rmSync(work, { recursive: true, force: true });
}
