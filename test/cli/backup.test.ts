import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import { ImsClient } from '../../src/client/index.js';
import { verifyFolder } from '../../src/cli/verify.js';
import { removeDir, tempDir } from '../support/fixtures.js';
import { MAIN_JS, startServer, type ServerProcess } from '../support/server-process.js';
import { blockNames, httpJson, writeHistory, writePeer } from '../replication/support.js';
import { waitFor } from '../support/wait.js';

const FSYNC_HOLD = fileURLToPath(new URL('../support/fsync-hold.js', import.meta.url));

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

  it('under write load copies a prefix of the log up to its durable end at connect; verifies clean; a server starts on it; a rerun continues', async () => {
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
      assert.match(first.stdout, /copying the master's log up to its durable end (\d+)/);
      const end = Number(/up to its durable end (\d+)/.exec(first.stdout)![1]);
      assert.match(
        first.stdout,
        new RegExp(`the log now ends at ${end}\\b`),
        'exactly the durable end at connect',
      );
      assertPrefix(masterDir, dir);
      assert.ok(written > 0, 'writes went on meanwhile');
      const v = verifyFolder(dir, { blockSize: BLOCK, blockSizeSource: 'test' });
      assert.equal(v.clean, true, JSON.stringify(v.problems));
      assert.equal(v.logEnd, end);
      assert.equal(v.checksums.unchecked, 0, 'the copy keeps checksums too');

      const again = await backup(master.syncAddress, dir);
      assert.equal(again.code, 0, again.stdout + again.stderr);
      assert.match(again.stdout, new RegExp(`continuing from ${end} \\(epoch \\d+\\) up to`));
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

  const storageOf = async (s: ServerProcess) =>
    (
      (await httpJson(`${s.httpBase}/summary`)) as {
        storage: { next_message_id: number; durable_message_id: number };
      }
    ).storage;

  it('copies only what the master has on disk: a record written but not yet fsynced is left out', async () => {
    const work = tempDir('ims-bk-hold-');
    dirs.push(work);
    const hold = path.join(work, 'hold');
    const held = await startServer({
      dataDir: path.join(work, 'master'),
      config,
      nodeFlags: ['--import', FSYNC_HOLD],
      env: { IMS_TEST_FSYNC_HOLD: hold },
    });
    servers.push(held);
    const client = new ImsClient({ host: '127.0.0.1', port: held.ports.rpc });
    clients.push(client);
    for (let i = 0; i < 20; i++) await writePeer(client, i);
    fs.writeFileSync(hold, '');
    // This save is written but its fdatasync is held: the log end runs past the durable end.
    const pending = writePeer(client, 20);
    const before = await waitFor(
      async () => {
        const st = await storageOf(held);
        return st.next_message_id > st.durable_message_id ? st : null;
      },
      { what: 'a record written but not durable' },
    );
    const dir = path.join(work, 'copy');
    const run = await backup(held.syncAddress, dir);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    const end = Number(/up to its durable end (\d+)/.exec(run.stdout)?.[1]);
    assert.equal(end, before.durable_message_id, run.stdout);
    assert.ok(end < before.next_message_id, 'stops before the record that is not on disk');
    const v = verifyFolder(dir, { blockSize: BLOCK, blockSizeSource: 'test' });
    assert.equal(v.clean, true, JSON.stringify(v.problems));
    assert.equal(v.logEnd, end);
    fs.rmSync(hold);
    assert.ok((await pending) >= end, 'the held save is acknowledged once its fsync runs');
  });

  it('resumed against a master whose log parts from the copy: refuses to splice, naming both epoch histories', async () => {
    const work = tempDir('ims-bk-fork-');
    dirs.push(work);
    const aDir = path.join(work, 'a');
    const bDir = path.join(work, 'b');
    const start = async (dataDir: string) => {
      const s = await startServer({ dataDir, config });
      servers.push(s);
      const c = new ImsClient({ host: '127.0.0.1', port: s.ports.rpc });
      clients.push(c);
      return { s, c };
    };
    // A and B share the records of epoch 1, then each writes its own: B is what a failover leaves when
    // the new master did not have A's newest records (cut or never received).
    let a = await start(aDir);
    for (let i = 0; i < 30; i++) await writePeer(a.c, i);
    await a.s.stop();
    fs.cpSync(aDir, bDir, { recursive: true });
    a = await start(aDir);
    for (let i = 30; i < 60; i++) await writePeer(a.c, i);
    const dir = path.join(work, 'copy');
    const first = await backup(a.s.syncAddress, dir);
    assert.equal(first.code, 0, first.stdout + first.stderr);
    const copied = Number(/up to its durable end (\d+)/.exec(first.stdout)?.[1]);
    await a.s.stop();
    let b = await start(bDir);
    for (let i = 0; i < 5; i++) await writePeer(b.c, 1000 + i);
    await b.s.stop();
    b = await start(bDir);
    await writePeer(b.c, 2000);
    const blocksBefore = blockNames(dir).map((n) => fs.readFileSync(path.join(dir, n)));
    const resumed = await backup(b.s.syncAddress, dir);
    assert.equal(resumed.code, 1, resumed.stdout + resumed.stderr);
    assert.match(
      resumed.stderr,
      new RegExp(
        `refusing to splice onto a different log: this backup ends at ${copied} \\(epochs 1@\\d+, 2@\\d+\\), ` +
          `the master's log is at epoch 3, durable end \\d+ \\(epochs 1@\\d+, 2@\\d+, 3@\\d+\\); ` +
          `they agree only up to \\d+ \\(common epoch 2\\)\\. Back up into a new, empty folder`,
      ),
    );
    const blocksAfter = blockNames(dir).map((n) => fs.readFileSync(path.join(dir, n)));
    assert.equal(blocksAfter.length, blocksBefore.length);
    blocksAfter.forEach((b, i) => assert.ok(b.equals(blocksBefore[i]), 'the copy is left as it was'));
    // The same master into a new folder is fine.
    const fresh = await backup(b.s.syncAddress, path.join(work, 'fresh'));
    assert.equal(fresh.code, 0, fresh.stdout + fresh.stderr);
  });
});
