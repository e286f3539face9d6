import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { removeDir, tempDir } from '../support/fixtures.js';
import { MAIN_JS, startServer, writeConfig } from '../support/server-process.js';
import { waitFor } from '../support/wait.js';

interface LogObject {
  level: string;
  pid: number;
  timestamp: number;
  message: string;
  context?: string;
}

/** Every line parsed as one JSON log object with the fields a log pipeline needs; throws naming the line. */
function parseLines(lines: string[]): LogObject[] {
  return lines
    .filter((l) => l.trim() !== '')
    .map((l) => {
      let o: LogObject;
      try {
        o = JSON.parse(l) as LogObject;
      } catch {
        throw new Error(`not a JSON log line: ${l}`);
      }
      assert.equal(typeof o.level, 'string', l);
      assert.equal(typeof o.pid, 'number', l);
      assert.ok(Number.isFinite(o.timestamp) && o.timestamp > 1.6e12, `timestamp in ms: ${l}`);
      assert.equal(typeof o.message, 'string', l);
      return o;
    });
}

describe('-log_format=json', () => {
  const work = tempDir('ims-json-');
  after(() => removeDir(work));

  it('makes every console line, the banner included, one JSON object; /stack is logged only at -v=1', async () => {
    const quiet = await startServer({ flags: ['-log_format=json'] });
    const loud = await startServer({ flags: ['-log_format=json', '-v=1'] });
    try {
      for (const s of [quiet, loud]) {
        const res = await fetch(`${s.httpBase}/stack`);
        assert.equal(res.status, 200);
        assert.ok(((await res.json()) as { header?: unknown }).header, 'the report is in the answer');
      }
      await waitFor(() => loud.output.some((l) => l.includes('stack report')), {
        what: 'stack report at -v=1',
      });
      assert.equal((await quiet.stop()).code, 0);
      assert.equal((await loud.stop()).code, 0);
      const logs = parseLines(quiet.output);
      assert.match(logs[0].message, /^Version: +\d/, 'the version banner comes first, as a JSON object');
      assert.ok(logs.some((o) => o.context === 'Storage' && /^opened /.test(o.message)));
      assert.ok(logs.some((o) => o.context === 'ims' && /^rpc listening on/.test(o.message)));
      assert.ok(logs.some((o) => /^shutdown complete/.test(o.message)));
      assert.equal(
        logs.some((o) => o.message.includes('stack report')),
        false,
        'no stack report at -v=0',
      );
      const stackLine = parseLines(loud.output).find((o) => o.message.startsWith('stack report'));
      assert.equal(stackLine?.level, 'debug');
    } finally {
      await quiet.stop();
      await loud.stop();
    }
  });

  it('with -log_dir writes JSON lines to DIR/ims.log and keeps the console for errors', async () => {
    const logDir = path.join(work, 'logs');
    const server = await startServer({ flags: ['-log_format=json', `-log_dir=${logDir}`], waitReady: false });
    const file = path.join(logDir, 'ims.log');
    const text = () => (fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '');
    await waitFor(() => text().includes('rpc listening on'), { what: 'rpc listening in ims.log' });
    assert.equal((await server.stop()).code, 0);
    const logs = parseLines(text().split('\n'));
    assert.match(logs[0].message, /^Version: /);
    assert.ok(logs.some((o) => /^shutdown complete/.test(o.message)));
    assert.deepEqual(server.output, [], 'nothing on the console without an error');
  });

  it('reports a config error as a JSON line (exit 2), and refuses an unknown format', async () => {
    const dir = fs.mkdtempSync(path.join(work, 'bad-'));
    const config = writeConfig(dir, {
      rpc_listen: 'nonsense',
      storage_root: dir,
      sync_listen: ':0',
      kefu_appid: 0,
    });
    const run = (args: string[]) =>
      new Promise<{ code: number | null; out: string }>((resolve) => {
        const child = spawn(process.execPath, [MAIN_JS, ...args], {
          cwd: dir,
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let out = '';
        child.stdout.on('data', (c: Buffer) => (out += c.toString()));
        child.stderr.on('data', (c: Buffer) => (out += c.toString()));
        child.once('exit', (code) => resolve({ code, out }));
      });
    const bad = await run(['-log_format=json', config]);
    assert.equal(bad.code, 2);
    const [line] = parseLines(bad.out.split('\n'));
    assert.equal(line.level, 'error');
    assert.match(line.message, /rpc_listen must be host:port/);
    const unknown = await run(['-log_format=xml', config]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.out, /invalid value "xml" for flag -log_format/);
  });
});
