/**
 * What a new user meets in the first minutes: `ims --help`, a mistyped port, a data folder the server's
 * user cannot write, and a relative storage_root. Each is a real process on real files.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ConfigError, loadConfigFile, parseConfigText } from '../../src/config/index.js';
import { ims } from '../support/cli-runner.js';
import { REPO_ROOT, removeDir, tempDir } from '../support/fixtures.js';
import { MAIN_JS, ServerProcess, startServer, writeConfig } from '../support/server-process.js';

const NOBODY = { uid: 65534, gid: 65534 };
const TOOLS = ['verify', 'inspect', 'repair', 'backup', 'upgrade', 'cluster'];

/** Starts the server on `configPath` from the working directory `cwd` (not the config's folder). */
function startFrom(cwd: string, configPath: string, dataDir: string): ServerProcess {
  const proc = spawn(process.execPath, [MAIN_JS, configPath], {
    cwd,
    env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new ServerProcess(proc, dataDir, configPath, {});
}

describe('first start', () => {
  let work: string;
  before(() => {
    work = tempDir('ims-first-');
  });
  after(() => removeDir(work));

  for (const flag of ['--help', '-help', '-h', 'help']) {
    it(`ims ${flag} prints the usage with the operator tools and exits 0`, async () => {
      const run = await ims(flag);
      assert.equal(run.code, 0, run.stdout + run.stderr);
      assert.equal(run.stderr, '');
      assert.match(run.stdout, /^usage: ims \[flags\] \[CONFIG\]$/m);
      assert.match(run.stdout, /-log_format=text\|json/);
      for (const tool of TOOLS) assert.match(run.stdout, new RegExp(`^ {2}ims ${tool} `, 'm'), tool);
    });
  }

  it('an unknown flag still exits 2, pointing at --help', async () => {
    const run = await ims('-bogus');
    assert.equal(run.code, 2);
    assert.match(run.stderr, /flag provided but not defined: -bogus/);
    assert.match(run.stderr, /ims --help/);
  });

  it('a port above 65535 is a config error (exit 2) naming the key, before storage is touched', () => {
    const dir = path.join(work, 'port');
    fs.mkdirSync(dir);
    const cfg = writeConfig(dir, {
      rpc_listen: '127.0.0.1:99999',
      storage_root: path.join(dir, 'data'),
      sync_listen: '127.0.0.1:0',
      kefu_appid: 0,
    });
    const r = spawnSync(process.execPath, [MAIN_JS, cfg], { encoding: 'utf8' });
    assert.equal(r.status, 2, r.stdout + r.stderr);
    assert.match(
      r.stderr,
      /ims\.cfg:1: key "rpc_listen": port 99999 is out of range \(0-65535\) \(got "127\.0\.0\.1:99999"\)/,
    );
    assert.equal(fs.existsSync(path.join(dir, 'data')), false, 'storage untouched');
  });

  it('ports are checked on every address key: listeners 0-65535, where to connect 1-65535', () => {
    const base = ['rpc_listen=127.0.0.1:1', 'storage_root=/d', 'sync_listen=127.0.0.1:2', 'kefu_appid=0'];
    const bad: [string, RegExp][] = [
      ['sync_listen=:65536', /x\.cfg:4: key "sync_listen": port 65536 is out of range \(0-65535\)/],
      ['http_listen_address=:70000', /key "http_listen_address": port 70000 is out of range/],
      ['gorpc_listen=:99999', /key "gorpc_listen": port 99999/],
      ['netrpc_listen=:99999', /key "netrpc_listen": port 99999/],
      ['master_address=10.0.0.1:0', /key "master_address": port 0 is out of range \(1-65535\)/],
      ['etcd_endpoints=a:2379,b:99999', /key "etcd_endpoints": port 99999 of b:99999 is out of range/],
    ];
    for (const [line, expected] of bad) {
      // Replace the key when the base sets it (a key may appear once).
      const key = line.split('=')[0];
      const lines = [...base.filter((l) => !l.startsWith(`${key}=`)), line];
      assert.throws(
        () => parseConfigText(lines.join('\n'), 'x.cfg'),
        (err: Error) => {
          assert.ok(err instanceof ConfigError);
          assert.match(err.message, expected);
          return true;
        },
      );
    }
    assert.equal(
      parseConfigText([...base, 'http_listen_address=:65535'].join('\n'), 'x.cfg').rpc_listen,
      '127.0.0.1:1',
    );
  });

  it('a block file the server user cannot write: exit 1 naming storage_root, the file, its owner and ours', async () => {
    const dataDir = path.join(work, 'owned');
    // A folder written by root (a server once run as root), then handed to nobody without its files.
    const first = await startServer({ dataDir, http: false });
    await first.stop();
    removeDir(path.dirname(first.configPath));
    fs.chmodSync(work, 0o755);
    fs.chownSync(dataDir, NOBODY.uid, NOBODY.gid);
    const server = await startServer({ dataDir, http: false, user: NOBODY, waitReady: false });
    try {
      const { code } = await server.waitExit();
      assert.equal(code, 1, server.logText());
      const failures = server.output.filter((l) => l.includes('start-up failed'));
      assert.equal(failures.length, 1, server.logText());
      const dir = dataDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      assert.match(
        failures[0],
        new RegExp(
          `storage_root=${dir}: cannot open ${dir}/\\S+: permission denied, owned by uid 0 gid 0 with ` +
            `mode 0644; ims runs as uid 65534 gid 65534 \\(EACCES\\)$`,
        ),
      );
    } finally {
      await server.kill9();
      removeDir(path.dirname(server.configPath));
    }
  });

  it('a relative storage_root is relative to the config file, and the log says the absolute folder', async () => {
    const confDir = path.join(work, 'etc');
    const elsewhere = path.join(work, 'elsewhere');
    fs.mkdirSync(confDir);
    fs.mkdirSync(elsewhere);
    const cfg = writeConfig(confDir, {
      rpc_listen: '127.0.0.1:0',
      storage_root: './data',
      sync_listen: '127.0.0.1:0',
      kefu_appid: 0,
    });
    const dataDir = path.join(confDir, 'data');
    const server = startFrom(elsewhere, cfg, dataDir);
    try {
      await server.waitForLog(/rpc listening on/);
      assert.ok(fs.existsSync(path.join(dataDir, 'message_0')), 'the folder beside the config');
      assert.equal(fs.existsSync(path.join(elsewhere, 'data')), false, 'nothing in the working directory');
      await server.waitForLog(
        new RegExp(`storage ${dataDir} \\(storage_root=\\./data, relative to the config file's folder\\)`),
      );
    } finally {
      await server.stop();
    }
  });

  it('a relative storage_root that would move a Go-style folder (data in the working directory) stops start-up', () => {
    const confDir = path.join(work, 'go-etc');
    const cwd = path.join(work, 'go-cwd');
    fs.mkdirSync(confDir);
    fs.mkdirSync(path.join(cwd, 'data'), { recursive: true });
    fs.writeFileSync(path.join(cwd, 'data', 'message_0'), Buffer.alloc(32));
    const cfg = writeConfig(confDir, {
      rpc_listen: '127.0.0.1:0',
      storage_root: 'data',
      sync_listen: '127.0.0.1:0',
      kefu_appid: 0,
    });
    const r = spawnSync(process.execPath, [MAIN_JS, cfg], { cwd, encoding: 'utf8' });
    assert.equal(r.status, 2, r.stdout + r.stderr);
    assert.match(
      r.stderr,
      new RegExp(
        `ims\\.cfg:2: key "storage_root": "data" is relative to the config file's folder and names ` +
          `${path.join(confDir, 'data')}, which holds no data, while ${path.join(cwd, 'data')} .* holds a data folder`,
      ),
    );
    assert.equal(fs.existsSync(path.join(confDir, 'data')), false, 'no new empty folder');
  });

  it('the default config (npm start) keeps its data under ./data of the checkout, whatever the cwd', () => {
    const config = loadConfigFile(path.join(REPO_ROOT, 'config/ims.cfg'));
    assert.equal(config.storage_root, path.join(REPO_ROOT, 'data'));
  });

  it('tls_cert, tls_key and tls_ca are relative to the config file too', () => {
    const dir = path.join(work, 'tls-rel');
    fs.mkdirSync(dir);
    const cfg = writeConfig(dir, {
      rpc_listen: '127.0.0.1:0',
      storage_root: '/data',
      sync_listen: '127.0.0.1:0',
      kefu_appid: 0,
      tls_cert: 'tls/tls.crt',
      tls_key: '/etc/ims/tls.key',
      tls_ca: '../ca.crt',
    });
    const config = loadConfigFile(cfg);
    assert.equal(config.tls_cert, path.join(dir, 'tls/tls.crt'));
    assert.equal(config.tls_key, '/etc/ims/tls.key');
    assert.equal(config.tls_ca, path.join(work, 'ca.crt'));
    assert.equal(config.storage_root, '/data');
  });
});
