/**
 * examples/cluster-client.mjs (the README's ImsClusterClient example), run as a user would against a
 * real etcd and a two-node shard, so that it stays correct.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { EtcdProcess } from '../support/etcd.js';
import { REPO_ROOT } from '../support/fixtures.js';
import { MAIN_JS, killAll, startServer, type ServerProcess } from '../support/server-process.js';
import { waitFor } from '../support/wait.js';
import { httpJson } from '../replication/support.js';

const EXAMPLE = path.join(REPO_ROOT, 'examples/cluster-client.mjs');

function runExample(
  env: Record<string, string>,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [EXAMPLE], {
      cwd: REPO_ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe('examples/cluster-client.mjs against etcd and two nodes', () => {
  let etcd: EtcdProcess;
  const servers: ServerProcess[] = [];
  before(async () => {
    etcd = await EtcdProcess.start();
  });
  after(async () => {
    await killAll(servers);
    await etcd?.stop();
  });

  it('connects, saves two messages through the master, syncs them back, and exits 0', async () => {
    const init = spawnSync(
      process.execPath,
      [MAIN_JS, 'cluster', 'init', '--etcd', etcd.endpoint, '--cluster', 'ex', '--shards', '2'],
      { encoding: 'utf8' },
    );
    assert.equal(init.status, 0, init.stderr);
    // bob (10002) lives on shard 10002 mod 2 = 0; shard 0 gets a master and an in-sync replica.
    for (const name of ['x1', 'x2']) {
      servers.push(
        await startServer({
          config: { etcd_endpoints: etcd.endpoint, cluster_name: 'ex', shard: 0, node_name: name },
        }),
      );
    }
    await waitFor(
      async () => {
        for (const s of servers) {
          const sum = (await httpJson(`${s.httpBase}/summary`)) as {
            cluster: { role: string } | null;
            replication: { master: { inSyncReplicas: number } };
          };
          if (sum.cluster?.role === 'master' && sum.replication.master.inSyncReplicas === 1) return true;
        }
        return false;
      },
      { what: 'a master with its replica in sync', timeoutMs: 20000, intervalMs: 100 },
    );
    const { code, stdout, stderr } = await runExample({ IMS_ETCD: etcd.endpoint, IMS_CLUSTER: 'ex' });
    assert.equal(code, 0, `exit ${code}\nstdout:\n${stdout}\nstderr:\n${stderr}`);
    assert.equal(stderr, '');
    assert.match(stdout, /^connected: 2 shard\(s\); bob is on shard 0$/m);
    const saved = [...stdout.matchAll(/^saved: msgId=(\d+) prevMsgId=(\d+)$/gm)].map((m) => Number(m[1]));
    assert.equal(saved.length, 2, stdout);
    // (SyncMessage answers newest first, as Go does.)
    const synced = [...stdout.matchAll(/^ {2}msgId=(\d+) (.*)$/gm)]
      .map((m) => [Number(m[1]), m[2]] as const)
      .sort((a, b) => a[0] - b[0]);
    assert.deepEqual(synced, [
      [saved[0], 'hello bob'],
      [saved[1], 'lunch at noon?'],
    ]);
  });
});
