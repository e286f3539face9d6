import assert from 'node:assert/strict';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { removeDir } from '../support/fixtures.js';
import { freePort, startServer, type ServerProcess } from '../support/server-process.js';
import { waitFor } from '../support/wait.js';

async function ready(server: ServerProcess): Promise<{ status: number; body: any }> {
  const res = await fetch(`${server.httpBase}/health/ready`);
  return { status: res.status, body: await res.json() };
}

describe('readiness: disk threshold and a slave without its master', () => {
  it('is 503 when free disk is below min_free_disk_mb, and 200 after a restart with a threshold that fits', async () => {
    const first = await startServer({ config: { min_free_disk_mb: 1_000_000_000 } });
    const work = path.dirname(first.configPath);
    try {
      const { status, body } = await ready(first);
      assert.equal(status, 503);
      assert.equal(body.error.disk.status, 'down');
      assert.match(body.error.disk.message, /below min_free_disk_mb 1000000000/);
      assert.equal(body.details.storage.status, 'up');
      // Liveness does not depend on disk space: restarting would not help.
      assert.equal((await fetch(`${first.httpBase}/health/live`)).status, 200);
      assert.equal((await first.stop()).code, 0);
      // The threshold is read from the config at start-up: the fix is a config change and a restart.
      const second = await startServer({ dataDir: first.dataDir, config: { min_free_disk_mb: 1 } });
      try {
        const again = await ready(second);
        assert.equal(again.status, 200);
        assert.equal(again.body.details.disk.status, 'up');
        assert.ok(again.body.details.disk.freeMb >= 1);
      } finally {
        await second.stop();
        removeDir(path.dirname(second.configPath));
      }
    } finally {
      await first.stop();
      removeDir(work);
    }
  });

  it('a slave whose master is down is live but not ready (replication down)', async () => {
    const deadMaster = `127.0.0.1:${await freePort()}`;
    const slave = await startServer({ masterAddress: deadMaster });
    try {
      const { status, body } = await ready(slave);
      assert.equal(status, 503);
      assert.equal(body.error.replication.status, 'down');
      assert.match(body.error.replication.message, new RegExp(`not linked to master ${deadMaster}`));
      assert.equal(body.details.storage.status, 'up');
      assert.equal((await fetch(`${slave.httpBase}/health/live`)).status, 200);
      const summary = (await (await fetch(`${slave.httpBase}/summary`)).json()) as any;
      assert.equal(summary.replication.role, 'slave');
      assert.equal(summary.replication.linked, false);
    } finally {
      await slave.stop();
      removeDir(path.dirname(slave.configPath));
    }
  });

  it('a slave linked to a live master is ready, and not ready once the master is gone', async () => {
    const master = await startServer();
    const slave = await startServer({ masterAddress: master.syncAddress });
    try {
      const r = await waitFor(
        async () => {
          const res = await ready(slave);
          return res.status === 200 ? res : null;
        },
        { what: 'the slave to become ready', timeoutMs: 10000, intervalMs: 100 },
      );
      assert.equal(r.body.details.replication.status, 'up');
      assert.equal(r.body.details.replication.master, master.syncAddress);
      await master.kill9();
      const down = await waitFor(
        async () => {
          const res = await ready(slave);
          return res.status !== 200 ? res : null;
        },
        { what: 'the slave to become not ready', timeoutMs: 15000, intervalMs: 100 },
      );
      assert.equal(down.status, 503);
      assert.equal(down.body.error.replication.status, 'down');
    } finally {
      await slave.stop();
      await master.stop();
      removeDir(path.dirname(slave.configPath));
      removeDir(path.dirname(master.configPath));
    }
  });
});
