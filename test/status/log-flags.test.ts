import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { removeDir, tempDir } from '../support/fixtures.js';
import { clientFor, imBody } from '../support/rpc-client.js';
import { freePort, MAIN_JS, startServer, writeConfig } from '../support/server-process.js';
import { waitFor } from '../support/wait.js';

/** Runs main.js with its stdout and stderr kept apart. */
function run(args: string[], cwd: string) {
  const child = spawn(process.execPath, [MAIN_JS, ...args], {
    cwd,
    env: { ...process.env, NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out = { stdout: '', stderr: '' };
  child.stdout.on('data', (c: Buffer) => (out.stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (out.stderr += c.toString()));
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, out, exit };
}

describe('glog-style flags: -v, -logtostderr, -log_dir', () => {
  const work = tempDir('ims-flags-');
  after(() => removeDir(work));

  it('-logtostderr sends every log line to stderr and none to stdout', async () => {
    const dir = fs.mkdtempSync(path.join(work, 'stderr-'));
    const config = writeConfig(dir, {
      rpc_listen: `127.0.0.1:${await freePort()}`,
      storage_root: path.join(dir, 'data'),
      sync_listen: `127.0.0.1:${await freePort()}`,
      kefu_appid: 0,
    });
    const p = run(['-logtostderr', config], dir);
    await waitFor(() => p.out.stderr.includes('rpc listening on'), { what: 'rpc listening on stderr' });
    p.child.kill('SIGTERM');
    assert.equal(await p.exit, 0);
    assert.match(p.out.stderr, /LOG \[Storage\] closed storage/);
    assert.doesNotMatch(p.out.stdout, /\[Nest\]/, 'no log line on stdout');
    assert.match(p.out.stdout, /^Version: /m, 'the version banner is not a log line and stays on stdout');
  });

  it('-log_dir writes the log to DIR/ims.log (not the console); without -v there are no debug lines', async () => {
    const logDir = path.join(work, 'logs');
    const server = await startServer({ flags: [`-log_dir=${logDir}`], waitReady: false });
    try {
      const file = path.join(logDir, 'ims.log');
      const text = () => (fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '');
      await waitFor(() => text().includes('rpc listening on'), { what: 'rpc listening in ims.log' });
      assert.equal(
        server.output.some((l) => l.includes('[Nest]')),
        false,
        'log lines go to the file only',
      );
      const client = clientFor(server);
      await client.savePeerMessage({ appId: 1, uid: 2, deviceId: 3, cmd: 4, raw: imBody(1, 2, 'hi') });
      await client.close();
      assert.equal((await server.stop()).code, 0);
      assert.match(text(), /shutdown complete/);
      assert.doesNotMatch(text(), / DEBUG /);
      assert.ok(!text().includes('\u001b['), 'no colour codes in the file');
    } finally {
      await server.stop();
      removeDir(path.dirname(server.configPath));
    }
  });

  it('an unknown flag or a bad -v value is refused with exit 2 before anything starts', async () => {
    const bogus = run(['-bogus', 'whatever.cfg'], work);
    assert.equal(await bogus.exit, 2);
    assert.match(bogus.out.stderr, /flag provided but not defined: -bogus/);
    const badV = run(['-v=loud', 'whatever.cfg'], work);
    assert.equal(await badV.exit, 2);
    assert.match(badV.out.stderr, /invalid value "loud" for flag -v/);
  });
});

describe('flush jobs', () => {
  it('with durability=interval, the 1-second job fsyncs what was acknowledged before the fsync', async () => {
    const server = await startServer({ config: { durability: 'interval' } });
    try {
      const summary = async () => ((await (await fetch(`${server.httpBase}/summary`)).json()) as any).storage;
      const client = clientFor(server);
      // An ack comes before its fsync; should the job tick in between the ack and the look, save again.
      let first;
      for (let i = 0; i < 3; i++) {
        await client.savePeerMessage({ appId: 1, uid: 2, deviceId: 3, cmd: 4, raw: imBody(1, 2, `hi ${i}`) });
        first = await summary();
        if (first.durable_message_id < first.next_message_id) break;
      }
      await client.close();
      assert.ok(first.durable_message_id < first.next_message_id, 'acked before it was durable');
      const s = await waitFor(
        async () => {
          const now = await summary();
          return now.durable_message_id >= now.next_message_id ? now : null;
        },
        { what: 'the interval job to make the ack durable', timeoutMs: 3000, intervalMs: 100 },
      );
      assert.equal(s.durable_message_id, s.next_message_id, 'the interval job made it durable');
      assert.ok(s.last_fsync_at !== null);
    } finally {
      await server.stop();
      removeDir(path.dirname(server.configPath));
    }
  });
});
