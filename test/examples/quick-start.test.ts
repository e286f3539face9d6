import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { decodeBody } from '../../src/client/index.js';
import { REPO_ROOT, removeDir, tempDir } from '../support/fixtures.js';
import { clientFor, freePortFor } from '../support/rpc-client.js';
import { startServer, type ServerProcess } from '../support/server-process.js';

const EXAMPLE = path.join(REPO_ROOT, 'examples/quick-start.mjs');

/** Runs the example as a user would (node examples/quick-start.mjs) with IMS_RPC set. */
function runExample(rpc: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [EXAMPLE], {
      cwd: REPO_ROOT,
      env: { ...process.env, IMS_RPC: rpc },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** The JSON body printed after `msgId=N cmd=C deviceId=D ` on each message line. */
function printedMessages(section: string): { msgId: number; cmd: number; body: Record<string, unknown> }[] {
  return [...section.matchAll(/^ {2}msgId=(\d+) cmd=(\d+) deviceId=\d+ (\{.*\})$/gm)].map((m) => ({
    msgId: Number(m[1]),
    cmd: Number(m[2]),
    body: JSON.parse(m[3]) as Record<string, unknown>,
  }));
}

/** The lines from the one starting with `title` up to the next line that does not start with a space. */
function section(out: string, title: string): string {
  const lines = out.split('\n');
  const start = lines.findIndex((l) => l.startsWith(title));
  assert.ok(start >= 0, `no "${title}" line in:\n${out}`);
  const rest = lines.slice(start + 1);
  const end = rest.findIndex((l) => !l.startsWith(' '));
  return [lines[start], ...rest.slice(0, end < 0 ? rest.length : end)].join('\n');
}

describe('examples/quick-start.mjs against a real server', () => {
  let server: ServerProcess;
  before(async () => {
    server = await startServer({ config: { block_size: 1048576 } });
  });
  after(async () => {
    await server?.stop();
    if (server) removeDir(path.dirname(server.dataDir));
  });

  it('saves, syncs, counts and prints the decoded bodies, and exits 0', async () => {
    const { code, stdout, stderr } = await runExample(server.rpcAddress);
    assert.equal(code, 0, `exit ${code}\nstdout:\n${stdout}\nstderr:\n${stderr}`);
    assert.equal(stderr, '');

    const saves = [...stdout.matchAll(/^saved (peer|group) message: msgId=(\d+) prevMsgId=(\d+)$/gm)].map(
      (m) => ({ kind: m[1], msgId: Number(m[2]), prevMsgId: Number(m[3]) }),
    );
    assert.deepEqual(
      saves.map((s) => s.kind),
      ['peer', 'peer', 'group'],
    );
    const [first, second, group] = saves;
    // A fresh folder: the first record sits after the 32-byte block header; bob's queue chains the two.
    assert.equal(first.msgId, 32);
    assert.equal(first.prevMsgId, 0);
    assert.equal(second.prevMsgId, first.msgId);
    assert.ok(group.msgId > second.msgId);
    assert.equal(group.prevMsgId, 0);

    const im = (msgid: number, content: string) => ({
      sender: '10001',
      receiver: '10002',
      timestamp: 0,
      msgid,
      content,
    });
    const withoutTime = (b: Record<string, unknown>) => ({ ...b, timestamp: 0 });

    const sync = section(stdout, 'SyncMessage bob:');
    assert.match(
      sync,
      new RegExp(`^SyncMessage bob: 2 messages, lastMsgId=${second.msgId} hasMore=false$`, 'm'),
    );
    const synced = printedMessages(sync);
    assert.deepEqual(
      synced.map((m) => [m.msgId, m.cmd, withoutTime(m.body)]),
      [
        [second.msgId, 4, im(2, 'lunch at noon?')],
        [first.msgId, 4, im(1, 'hello bob')],
      ],
    );
    // The timestamp the example wrote (now, in seconds) came back as a number.
    const ts = synced[0].body.timestamp as number;
    assert.ok(Math.abs(ts - Date.now() / 1000) < 120, `timestamp ${ts}`);
    assert.match(stdout, /^newest from 10001 to 10002: lunch at noon\?$/m);

    assert.match(stdout, /^GetNewCount bob since 0: 1$/m);
    assert.match(stdout, new RegExp(`^GetNewCount bob since ${second.msgId}: 0$`, 'm'));

    const latest = printedMessages(section(stdout, 'GetLatestMessage bob limit 1: 1 message'));
    assert.deepEqual(
      latest.map((m) => [m.msgId, withoutTime(m.body)]),
      [[second.msgId, im(2, 'lunch at noon?')]],
    );

    const groupSync = section(stdout, 'SyncGroupMessage group 3001:');
    assert.match(
      groupSync,
      new RegExp(`^SyncGroupMessage group 3001: 1 message, lastMsgId=${group.msgId}$`, 'm'),
    );
    assert.deepEqual(
      printedMessages(groupSync).map((m) => [m.msgId, m.cmd, withoutTime(m.body)]),
      [[group.msgId, 8, { ...im(3, 'hi group 3001'), receiver: '3001' }]],
    );

    // What the example printed is what the server holds.
    const client = clientFor(server);
    try {
      const held = await client.syncMessage({ appId: 7, uid: 10002, deviceId: 9, lastMsgId: 0 });
      assert.deepEqual(
        held.messages.map((m) => [m.msgId, decodeBody(4, m.raw).content]),
        [
          [second.msgId, 'lunch at noon?'],
          [first.msgId, 'hello bob'],
        ],
      );
    } finally {
      await client.close();
    }
  });

  it('exits non-zero, saying why, when no server answers at IMS_RPC', async () => {
    const { code, stdout, stderr } = await runExample(`127.0.0.1:${await freePortFor()}`);
    assert.notEqual(code, 0);
    assert.equal(stdout, '');
    assert.match(stderr, /ECONNREFUSED/);
  });

  it("the README's first program runs as written, copied into a CommonJS project as ims-hello.mjs", async () => {
    const project = tempDir('ims-readme-');
    try {
      // The user's project: CommonJS (npm's default), with ims installed (here: linked to this checkout).
      fs.writeFileSync(
        path.join(project, 'package.json'),
        JSON.stringify({ name: 'im-server', version: '1.0.0', type: 'commonjs' }),
      );
      fs.mkdirSync(path.join(project, 'node_modules'));
      fs.symlinkSync(REPO_ROOT, path.join(project, 'node_modules/ims'), 'dir');
      fs.writeFileSync(path.join(project, 'ims-hello.mjs'), readmeFirstProgram());
      // A new server, as the README's "On a new server it prints" says.
      const fresh = await startServer({ http: false });
      let run: Awaited<ReturnType<typeof runNode>>;
      try {
        run = await runNode(['ims-hello.mjs'], project, fresh.rpcAddress);
      } finally {
        await fresh.stop();
        removeDir(path.dirname(fresh.dataDir));
      }
      assert.equal(run.code, 0, `exit ${run.code}\nstdout:\n${run.stdout}\nstderr:\n${run.stderr}`);
      assert.equal(run.stderr, '');
      assert.equal(run.stdout, readmeBlockAfter(readmeFirstProgram()));
      assert.match(run.stdout, /^msgId=32 from 10001 to 10002: hello bob$/m);

      // And CommonJS code can require the client (Node 20.19+ loads ES modules with require).
      fs.writeFileSync(
        path.join(project, 'require-check.js'),
        "const { ImsClient, encodeBody } = require('ims');\nconsole.log(typeof ImsClient, typeof encodeBody);\n",
      );
      const cjs = await runNode(['require-check.js'], project, server.rpcAddress);
      assert.equal(cjs.code, 0, cjs.stderr);
      assert.equal(cjs.stdout, 'function function\n');
    } finally {
      removeDir(project);
    }
  });
});

const README = () => fs.readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');

/** The README's first ```js block that imports from 'ims': the program a new user copies. */
function readmeFirstProgram(): string {
  const block = [...README().matchAll(/^```js\n([\s\S]*?)^```$/gm)]
    .map((m) => m[1])
    .find((b) => b.includes("from 'ims'"));
  assert.ok(block, "no js block importing from 'ims' in the README");
  return block;
}

/** The plain ``` block that follows `block` in the README (what it prints). */
function readmeBlockAfter(block: string): string {
  const text = README();
  // Past the block and its closing fence.
  const rest = text.slice(text.indexOf(block) + block.length + '```'.length);
  const m = /^```\n([\s\S]*?)^```$/m.exec(rest);
  assert.ok(m, 'no output block after the program');
  return m[1];
}

/** Runs node with `args` in `cwd`, IMS_RPC set. */
function runNode(
  args: string[],
  cwd: string,
  rpc: string,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, {
      cwd,
      env: { ...process.env, IMS_RPC: rpc },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
