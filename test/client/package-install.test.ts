/**
 * The client as an IM server's project gets it: `npm pack` of this repository, installed into a project
 * outside it, imported as 'ims', talking to a real server.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { REPO_ROOT, removeDir, tempDir } from '../support/fixtures.js';
import { startServer, type ServerProcess } from '../support/server-process.js';

interface LockEntry {
  version?: string;
  resolved?: string;
  integrity?: string;
  dev?: boolean;
  [key: string]: unknown;
}

function run(
  cmd: string,
  args: string[],
  cwd: string,
  env: Record<string, string> = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd,
      env: { ...process.env, npm_config_update_notifier: 'false', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

function ok(r: { code: number | null; stdout: string; stderr: string }, what: string): string {
  assert.equal(r.code, 0, `${what} exited ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
  return r.stdout;
}

/**
 * A lockfile for a project that depends on the tarball only: ims's own production entries (same
 * hoisted paths, since ims's dependencies land at the project's top level), each with its registry
 * URL. npm 11 resolves a dependency it has no lock entry for from the full packument, which a cache
 * filled by `npm ci` does not hold, so without this an offline install fails with ENOTCACHED; with it
 * npm takes every tarball from the cache by integrity, as `npm ci` does.
 */
function consumerLockfile(tarball: string): object {
  const lock = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, LockEntry>;
  };
  const pkg = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as Record<
    string,
    unknown
  >;
  const packages: Record<string, LockEntry> = {
    '': {
      name: 'ims-consumer',
      version: '1.0.0',
      dependencies: { ims: `file:../${path.basename(tarball)}` },
    },
    'node_modules/ims': {
      version: pkg.version as string,
      resolved: `file:../${path.basename(tarball)}`,
      integrity: `sha512-${createHash('sha512').update(fs.readFileSync(tarball)).digest('base64')}`,
      license: pkg.license,
      dependencies: pkg.dependencies,
      bin: pkg.bin,
      engines: pkg.engines,
    },
  };
  for (const [where, entry] of Object.entries(lock.packages)) {
    if (where === '' || entry.dev) continue;
    const name = where.slice(where.lastIndexOf('node_modules/') + 'node_modules/'.length);
    packages[where] = {
      ...entry,
      resolved:
        entry.resolved ??
        `https://registry.npmjs.org/${name}/-/${name.split('/').pop()}-${entry.version}.tgz`,
    };
  }
  return { name: 'ims-consumer', version: '1.0.0', lockfileVersion: 3, requires: true, packages };
}

/** What the package holds besides dist/src. */
const TOP_LEVEL_FILES = ['package.json', 'README.md', 'dist/build-info.json'];

const CONSUMER_MJS = `
import { ImsClient, MessageCmd, decodeBody, encodeBody } from 'ims';

const bigUid = '9007199254740993'; // above 2^53: only exact as a string or bigint
const raw = encodeBody(MessageCmd.IM, { sender: 1n, receiver: bigUid, timestamp: 1551000000, msgid: 9, content: 'packed ✓' });
const roundTrip = decodeBody(MessageCmd.IM, raw);
const [host, port] = process.env.IMS_RPC.split(':');
const ims = new ImsClient({ host, port: Number(port), timeoutMs: 5000 });
const pong = await ims.ping();
const saved = await ims.savePeerMessage({ appId: 3, uid: roundTrip.receiver, deviceId: 1, cmd: MessageCmd.IM, raw });
const sync = await ims.syncMessage({ appId: 3, uid: bigUid, deviceId: 2, lastMsgId: 0 });
await ims.close();
const big = (k, v) => (typeof v === 'bigint' ? v.toString() : v);
console.log(JSON.stringify({
  resolved: import.meta.resolve('ims'),
  pong,
  saved,
  roundTrip,
  synced: sync.messages.map((m) => ({ msgId: m.msgId, body: decodeBody(m.cmd, m.raw) })),
}, big));
`;

const CONSUMER_TS = `
import { decodeBody, encodeBody, type ImFields } from 'ims';

const raw: Buffer = encodeBody(4, { sender: 1n, receiver: 2, timestamp: 0, msgid: 0, content: 'x' });
const im: ImFields = decodeBody(4, raw);
export const sender: bigint = im.sender;
// @ts-expect-error -- an IM body has no customer fields
export const seller = decodeBody(4, raw).sellerId;
`;

describe('the packed package, installed in a project outside the repository', () => {
  let work: string;
  let server: ServerProcess;
  before(() => {
    work = tempDir('ims-pack-');
  });
  after(async () => {
    await server?.stop();
    if (server) removeDir(path.dirname(server.dataDir));
    removeDir(work);
  });

  it('packs what the client needs, installs offline, and saves and syncs against a real server', async () => {
    const serverStarted = startServer({ config: { block_size: 1048576 } });
    serverStarted.then((s) => (server = s)).catch(() => {});

    // dist/ is already built by the test build; the prepare script would rebuild it under running tests.
    const packed = JSON.parse(
      ok(
        await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], REPO_ROOT),
        'npm pack',
      ),
    ) as { filename: string; files: { path: string }[] }[];
    const files = packed[0].files.map((f) => f.path);
    for (const needed of [
      'package.json',
      'README.md',
      'dist/build-info.json',
      'dist/src/client/index.js',
      'dist/src/client/index.d.ts',
      'dist/src/client/bodies.js',
      'dist/src/format/bodies.js',
      'dist/src/main.js',
      'examples/quick-start.mjs',
    ])
      assert.ok(files.includes(needed), `${needed} is not in the package`);
    const strays = files.filter(
      (f) => !f.startsWith('dist/src/') && !/^examples\/[\w-]+\.mjs$/.test(f) && !TOP_LEVEL_FILES.includes(f),
    );
    assert.deepEqual(
      strays,
      [],
      'only dist/src, build info, the examples, README and package.json are packed',
    );

    const tarball = path.join(work, packed[0].filename);
    const project = path.join(work, 'project');
    fs.mkdirSync(project);
    fs.writeFileSync(
      path.join(project, 'package.json'),
      JSON.stringify({ name: 'ims-consumer', version: '1.0.0', private: true, type: 'module' }),
    );
    fs.writeFileSync(path.join(project, 'package-lock.json'), JSON.stringify(consumerLockfile(tarball)));
    ok(
      await run(
        'npm',
        ['install', '--offline', '--no-audit', '--no-fund', `../${path.basename(tarball)}`],
        project,
      ),
      'npm install',
    );
    const installed = path.join(project, 'node_modules/ims');
    assert.ok(fs.existsSync(path.join(installed, 'dist/src/client/index.js')));
    assert.ok(!fs.existsSync(path.join(installed, 'test')), 'tests are not installed');
    assert.ok(!fs.existsSync(path.join(installed, 'src')), 'TypeScript sources are not installed');

    // A TypeScript consumer sees the per-cmd types through the package's exports.
    fs.writeFileSync(path.join(project, 'consumer.ts'), CONSUMER_TS);
    fs.writeFileSync(
      path.join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          module: 'nodenext',
          moduleResolution: 'nodenext',
          target: 'ES2023',
          strict: true,
          noEmit: true,
          skipLibCheck: true,
          types: ['node'],
          typeRoots: [path.join(REPO_ROOT, 'node_modules/@types')],
        },
        files: ['consumer.ts'],
      }),
    );
    ok(
      await run(
        process.execPath,
        [path.join(REPO_ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'],
        project,
      ),
      'tsc in the consumer project',
    );

    fs.writeFileSync(path.join(project, 'consumer.mjs'), CONSUMER_MJS);
    const s = await serverStarted;
    const out = JSON.parse(
      ok(
        await run(process.execPath, ['consumer.mjs'], project, { IMS_RPC: s.rpcAddress }),
        'the consumer script',
      ),
    ) as Record<string, unknown>;
    // 'ims' is the installed copy, not this repository.
    assert.equal(out.resolved, `file://${fs.realpathSync(installed)}/dist/src/client/index.js`);
    assert.deepEqual(out.pong, { pong: true });
    const body = {
      sender: '1',
      receiver: '9007199254740993',
      timestamp: 1551000000,
      msgid: 9,
      content: 'packed ✓',
    };
    assert.deepEqual(out.roundTrip, body);
    assert.deepEqual(out.saved, { msgId: 32, prevMsgId: 0 });
    assert.deepEqual(out.synced, [{ msgId: 32, body }]);

    // The example the README points to runs from the installed package, in a CommonJS project too.
    fs.writeFileSync(
      path.join(project, 'package.json'),
      JSON.stringify({ name: 'ims-consumer', version: '1.0.0', private: true, type: 'commonjs' }),
    );
    const example = ok(
      await run(process.execPath, ['node_modules/ims/examples/quick-start.mjs'], project, {
        IMS_RPC: s.rpcAddress,
      }),
      'the packaged example',
    );
    assert.match(example, /^SyncMessage bob: 2 messages, lastMsgId=\d+ hasMore=false$/m);
  });
});
