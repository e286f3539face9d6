/**
 * `ims verify` on the folder of a running server (a monitoring job's use): the index files the server
 * has not saved yet are information, not problems, so a healthy live folder exits 0. Real problems
 * still exit 1, and a stopped folder is judged as before.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { ims } from '../support/cli-runner.js';
import { removeDir } from '../support/fixtures.js';
import { clientFor, imBody } from '../support/rpc-client.js';
import { startServer, type ServerProcess } from '../support/server-process.js';

async function save(server: ServerProcess, from: number, count: number): Promise<void> {
  const client = clientFor(server);
  try {
    for (let i = from; i < from + count; i++)
      await client.savePeerMessage({
        appId: 7,
        uid: 100 + (i % 5),
        deviceId: 1,
        cmd: 4,
        raw: imBody(1, 100 + (i % 5), `m${i}`),
      });
  } finally {
    await client.close();
  }
}

describe('ims verify on a live folder', () => {
  const servers: ServerProcess[] = [];
  after(async () => {
    for (const s of servers) {
      await s.kill9();
      removeDir(path.dirname(s.configPath));
    }
  });

  it('never saved, then stale, index files: exit 0 with notes while the server runs; exit 1 once it is gone', async () => {
    const first = await startServer({ http: false });
    servers.push(first);
    const data = first.dataDir;
    await save(first, 0, 20);
    assert.equal(fs.existsSync(path.join(data, 'peer_index')), false, 'a new server has not saved its index');

    const fresh = await ims('verify', data);
    assert.equal(fresh.code, 0, fresh.stdout + fresh.stderr);
    assert.match(fresh.stdout, /^note: peer_index not yet saved \(information: /m);
    assert.match(fresh.stdout, /^note: group_index not yet saved/m);
    assert.match(fresh.stdout, /^clean \(a server is running on this folder\)$/m);
    assert.doesNotMatch(fresh.stdout, /problems/);
    const json = JSON.parse((await ims('verify', data, '--json')).stdout) as {
      clean: boolean;
      live: boolean;
      notes: string[];
      problems: unknown[];
    };
    assert.deepEqual([json.clean, json.live, json.notes.length, json.problems], [true, true, 2, []]);

    // Stopped: the index is saved; started again and written to: the files are stale until the next save.
    await first.stop();
    const second = await startServer({ dataDir: data, http: false });
    servers.push(second);
    await save(second, 20, 10);
    const stale = await ims('verify', data);
    assert.equal(stale.code, 0, stale.stdout + stale.stderr);
    assert.match(
      stale.stdout,
      /^note: peer_index: stale: it reflects the log before id \d+; 5 queues changed after that \(information: the running server saves it later\)$/m,
    );

    // Gone without saving (SIGKILL): the same stale file is a problem for repair, as before.
    await second.kill9();
    const dead = await ims('verify', data);
    assert.equal(dead.code, 1, dead.stdout + dead.stderr);
    assert.match(dead.stdout, /- \[index-stale\] peer_index: stale/);
    assert.doesNotMatch(dead.stdout, /^note: /m);
  });

  it('a real problem in a live folder still exits 1', async () => {
    const server = await startServer({ http: false });
    servers.push(server);
    await save(server, 0, 5);
    await server.stop();
    const again = await startServer({ dataDir: server.dataDir, http: false });
    servers.push(again);
    // An index file cut mid-entry: a live server never leaves one (saves are atomic renames).
    const peerIndex = path.join(again.dataDir, 'peer_index');
    fs.truncateSync(peerIndex, fs.statSync(peerIndex).size - 3);
    const run = await ims('verify', again.dataDir);
    assert.equal(run.code, 1, run.stdout + run.stderr);
    assert.match(run.stdout, /- \[index-truncated\] peer_index/);
  });
});
