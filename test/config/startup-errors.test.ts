/**
 * A server that cannot start says so in one line naming the setting, its value and the cause, and exits
 * non-zero (no Nest stack trace, no misleading errno). Listeners on port 0 report their real ports.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
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
