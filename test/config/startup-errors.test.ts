/**
 * A server that cannot start says so in one line naming the setting, its value and the cause, and exits
 * non-zero (no Nest stack trace, no misleading errno). Listeners on port 0 report their real ports.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { removeDir, tempDir } from '../support/fixtures.js';
import { startServer, type ServerProcess } from '../support/server-process.js';

/** Starts a server that must fail; returns its exit code and the lines naming the failure. */
async function failedStart(options: Parameters<typeof startServer>[0]) {
  const server = await startServer({ ...options, waitReady: false });
  try {
    const { code } = await server.waitExit();
    return { code, server, failures: server.output.filter((l) => l.includes('start-up failed')) };
  } finally {
    // One that never exits (the bug under test) must not outlive the test and hold its file open.
    await server.kill9();
    removeDir(path.dirname(server.configPath));
  }
}

function assertOneCleanLine(server: ServerProcess, failures: string[], expected: RegExp) {
  assert.equal(failures.length, 1, server.logText());
  assert.match(failures[0], expected);
  assert.ok(!server.output.some((l) => /^\s+at /.test(l)), `no stack trace:\n${server.logText()}`);
}

/** Holds a TCP port on 127.0.0.1 until closed. */
async function occupyPort(): Promise<{ port: number; close: () => Promise<void> }> {
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  return {
    port: (srv.address() as net.AddressInfo).port,
    close: () => new Promise((resolve) => srv.close(() => resolve())),
  };
}

describe('start-up errors name the setting', () => {
  let work: string;
  before(() => {
    work = tempDir('ims-startup-');
  });
  after(() => removeDir(work));

  it('storage_root pointing at a file', async () => {
    const file = path.join(work, 'not-a-folder');
    fs.writeFileSync(file, 'x');
    const { code, server, failures } = await failedStart({ dataDir: file });
    assert.equal(code, 1);
    assertOneCleanLine(server, failures, /storage_root=.*not-a-folder: a file is there, not a folder$/);
  });

  it('storage_root below a file', async () => {
    const file = path.join(work, 'plain-file');
    fs.writeFileSync(file, 'x');
    const { code, server, failures } = await failedStart({ dataDir: path.join(file, 'data') });
    assert.equal(code, 1);
    assertOneCleanLine(
      server,
      failures,
      /storage_root=.*plain-file\/data: cannot create it: .*plain-file is a file, not a folder$/,
    );
  });

  it('storage_root on a read-only mount (not ENOENT)', async () => {
    const mount = path.join(work, 'ro');
    fs.mkdirSync(mount);
    // A real read-only file system: the tests run as root, as CI does.
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', mount]);
    try {
      const { code, server, failures } = await failedStart({ dataDir: path.join(mount, 'data') });
      assert.equal(code, 1);
      assertOneCleanLine(
        server,
        failures,
        /storage_root=.*ro\/data: cannot create it: .*ro is on a read-only file system$/,
      );
    } finally {
      execFileSync('umount', [mount]);
    }
  });

  for (const key of ['rpc_listen', 'sync_listen', 'http_listen_address'] as const) {
    it(`${key} on a port another process holds`, async () => {
      const busy = await occupyPort();
      try {
        const kind = key === 'rpc_listen' ? 'rpc' : key === 'sync_listen' ? 'sync' : 'http';
        const { code, server, failures } = await failedStart({ ports: { [kind]: busy.port } });
        assert.equal(code, 1);
        assertOneCleanLine(
          server,
          failures,
          new RegExp(`${key}=127\\.0\\.0\\.1:${busy.port}: address already in use .*EADDRINUSE$`),
        );
        assert.ok(!server.output.some((l) => l.includes('rpc listening on')), 'never claims to serve');
      } finally {
        await busy.close();
      }
    });
  }

  // An address no interface of this machine has: bind() fails with EADDRNOTAVAIL, which the stock Nest
  // TCP server never reported (the server stayed half-started and /health/ready said 200).
  const FOREIGN = '10.9.9.9';
  for (const key of ['rpc_listen', 'sync_listen', 'http_listen_address', 'gorpc_listen', 'netrpc_listen']) {
    it(`${key} on an address this machine does not have: exit 1 naming the key`, async () => {
      const local = Object.values(os.networkInterfaces()).flatMap((l) => (l ?? []).map((a) => a.address));
      assert.ok(!local.includes(FOREIGN), `this machine has ${FOREIGN}; the test needs an address it lacks`);
      const { code, server, failures } = await failedStart({ config: { [key]: `${FOREIGN}:0` } });
      assert.equal(code, 1);
      assertOneCleanLine(
        server,
        failures,
        new RegExp(`${key}=10\\.9\\.9\\.9:0: address not available .*EADDRNOTAVAIL$`),
      );
      assert.ok(!server.output.some((l) => l.includes('rpc listening on')), 'never claims to serve');
    });
  }

  it('a start that failed after opening storage leaves no stale lock for the next start', async () => {
    const busy = await occupyPort();
    const dataDir = path.join(work, 'lock-data');
    try {
      const { code, server } = await failedStart({ dataDir, ports: { rpc: busy.port } });
      assert.equal(code, 1);
      assert.ok(
        server.output.some((l) => l.includes('opened ')),
        `storage was opened:\n${server.logText()}`,
      );
      assert.equal(fs.existsSync(path.join(dataDir, 'ims.lock')), false, 'ims.lock removed on the way out');
    } finally {
      await busy.close();
    }
    const next = await startServer({ dataDir });
    try {
      assert.ok(!next.output.some((l) => /stale lock/.test(l)), next.logText());
      // The failed start closed storage properly: its index files were saved, so nothing is rebuilt.
      assert.ok(!next.output.some((l) => /index rebuilt/.test(l)), next.logText());
    } finally {
      await next.stop();
      removeDir(path.dirname(next.configPath));
    }
  });

  it('/health/ready names the bound listeners, and is 200 only once every one is bound', async () => {
    const server = await startServer();
    try {
      const res = await fetch(`${server.httpBase}/health/ready`);
      const body = (await res.json()) as { info: Record<string, Record<string, unknown>> };
      assert.equal(res.status, 200);
      assert.deepEqual(body.info.listeners, {
        status: 'up',
        rpc: server.rpcAddress,
        sync: server.syncAddress,
        http: `127.0.0.1:${server.ports.http}`,
        gorpc: null,
        netrpc: null,
      });
    } finally {
      await server.stop();
      removeDir(path.dirname(server.configPath));
    }
  });

  it('port 0: every listener reports its real port in the log and in /summary', async () => {
    const server = await startServer();
    try {
      const { rpc, sync, http } = server.ports;
      assert.ok(rpc > 0 && sync > 0 && http > 0 && new Set([rpc, sync, http]).size === 3);
      const summary = (await (await fetch(`${server.httpBase}/summary`)).json()) as {
        listening: Record<string, string>;
      };
      assert.deepEqual(summary.listening, {
        rpc: `127.0.0.1:${rpc}`,
        sync: `127.0.0.1:${sync}`,
        http: `127.0.0.1:${http}`,
        gorpc: null,
        netrpc: null,
      });
      assert.match(fs.readFileSync(server.configPath, 'utf8'), /^rpc_listen=127\.0\.0\.1:0$/m);
    } finally {
      await server.stop();
      removeDir(path.dirname(server.configPath));
    }
  });
});
