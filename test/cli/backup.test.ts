import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { ImsClient } from '../../src/client/index.js';
import { verifyFolder } from '../../src/cli/verify.js';
import { removeDir, tempDir } from '../support/fixtures.js';
import { MAIN_JS, startServer, type ServerProcess } from '../support/server-process.js';
import { blockNames, writeHistory, writePeer } from '../replication/support.js';

const BLOCK = 65536;
const config = { block_size: BLOCK };

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `ims backup`; `killWhen` is polled and SIGKILLs the child once true. */
function backup(from: string, dir: string, killWhen?: () => boolean): Promise<Run> {
  return new Promise((resolve, reject) => {
    const proc = spawn(
      process.execPath,
      [MAIN_JS, 'backup', '--from', from, dir, '--block-size', String(BLOCK)],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = killWhen
      ? setInterval(() => {
          if (killWhen()) proc.kill('SIGKILL');
        }, 2)
      : null;
    proc.on('error', reject);
    proc.on('close', (code, signal) => {
      if (timer) clearInterval(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** The copy is a prefix of the master's log: every block equal, the last one a prefix of the master's. */
function assertPrefix(masterDir: string, dir: string): void {
  const names = blockNames(dir);
  assert.deepEqual(names, blockNames(masterDir).slice(0, names.length));
  names.forEach((name, i) => {
    const a = fs.readFileSync(path.join(masterDir, name));
    const b = fs.readFileSync(path.join(dir, name));
    if (i < names.length - 1) assert.ok(a.equals(b), `${name} equals the master's`);
    else assert.ok(a.subarray(0, b.length).equals(b), `${name} is a prefix of the master's`);
  });
}

describe('ims backup', () => {
  const servers: ServerProcess[] = [];
  const dirs: string[] = [];
  const clients: ImsClient[] = [];
  after(async () => {
    for (const c of clients) await c.close().catch(() => undefined);
    for (const s of servers) await s.kill9().catch(() => undefined);
    for (const s of servers) removeDir(path.dirname(s.configPath));
    for (const d of dirs) removeDir(d);
  });
  const masterDir = tempDir('ims-bk-master-');
  dirs.push(masterDir);
  let master: ServerProcess;

  it('under write load copies a prefix of the log up to its end at connect; verifies clean; a server starts on it; a rerun continues', async () => {
    await writeHistory(masterDir, 4000, 8, 200, BLOCK);
    master = await startServer({ dataDir: masterDir, config });
    servers.push(master);
    const client = new ImsClient({ host: '127.0.0.1', port: master.ports.rpc });
    await client.connect();
    clients.push(client);
    let writing = true;
    let written = 0;
    const load = (async () => {
      while (writing) await writePeer(client, written++, 100);
    })();
    const dir = path.join(tempDir('ims-bk-'), 'copy');
    dirs.push(path.dirname(dir));
    try {
      const first = await backup(master.syncAddress, dir);
      assert.equal(first.code, 0, first.stdout + first.stderr);
      assert.match(first.stdout, /copying the master's log up to its end (\d+)/);
      const end = Number(/up to its end (\d+)/.exec(first.stdout)![1]);
      assert.match(
        first.stdout,
        new RegExp(`the log now ends at ${end}\\b`),
        'exactly the log end at connect',
      );
      assertPrefix(masterDir, dir);
      assert.ok(written > 0, 'writes went on meanwhile');
      const v = verifyFolder(dir, { blockSize: BLOCK, blockSizeSource: 'test' });
      assert.equal(v.clean, true, JSON.stringify(v.problems));
      assert.equal(v.logEnd, end);
      assert.equal(v.checksums.unchecked, 0, 'the copy keeps checksums too');

      const again = await backup(master.syncAddress, dir);
      assert.equal(again.code, 0, again.stdout + again.stderr);
      assert.match(again.stdout, new RegExp(`continuing from ${end} up to`));
      assertPrefix(masterDir, dir);
    } finally {
      writing = false;
      await load;
    }
    const copyServer = await startServer({ dataDir: dir, config });
    servers.push(copyServer);
    const c2 = new ImsClient({ host: '127.0.0.1', port: copyServer.ports.rpc });
    await c2.connect();
    clients.push(c2);
    const r = await c2.syncMessage({ appId: 7n, uid: 1003n, lastMsgId: 0, deviceId: 1 });
    assert.ok(r.messages.length > 0);
    await copyServer.stop();
  });

  it('SIGKILL in the middle of a backup, then a rerun: completes, a prefix, verifies clean', async () => {
    const dir = path.join(tempDir('ims-bk-kill-'), 'copy');
    dirs.push(path.dirname(dir));
    const killed = await backup(master.syncAddress, dir, () => fs.existsSync(path.join(dir, 'message_3')));
    assert.equal(killed.signal, 'SIGKILL', killed.stdout + killed.stderr);
    const rerun = await backup(master.syncAddress, dir);
    assert.equal(rerun.code, 0, rerun.stdout + rerun.stderr);
    assert.match(rerun.stdout, /continuing from \d+/);
    assertPrefix(masterDir, dir);
    const v = verifyFolder(dir, { blockSize: BLOCK, blockSizeSource: 'test' });
    assert.equal(v.clean, true, JSON.stringify(v.problems));
  });
});
