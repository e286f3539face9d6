import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { encodeSyncBegin } from '../../src/format/sync-frames.js';
import { removeDir, tempDir } from '../support/fixtures.js';
import { startServer, type ServerProcess } from '../support/server-process.js';
import { waitFor } from '../support/wait.js';
import { RawSyncSocket, blockNames, httpJson, waitIdentical, writeHistory } from './support.js';

const BLOCK = 65536;
const config = { block_size: BLOCK };

describe("a slave behind its master's retention", () => {
  const servers: ServerProcess[] = [];
  const dirs: string[] = [];
  after(async () => {
    for (const s of servers) await s.kill9().catch(() => undefined);
    for (const s of servers) removeDir(path.dirname(s.configPath));
    for (const d of dirs) removeDir(d);
  });

  it('an ims slave is told where the log starts, restarts there (logged) and ends byte-identical; a Go slave is refused', async () => {
    const masterDir = tempDir('ims-ret-master-');
    const slaveDir = tempDir('ims-ret-slave-');
    dirs.push(masterDir, slaveDir);
    // The slave holds an early copy of the master's log; the master then writes on and deletes old blocks.
    await writeHistory(masterDir, 300, 5, 100, BLOCK);
    fs.cpSync(masterDir, slaveDir, { recursive: true });
    const slaveBlocks = blockNames(slaveDir).length;
    await writeHistory(masterDir, 2500, 6, 100, BLOCK);
    const before = blockNames(masterDir).length;
    assert.ok(before >= slaveBlocks + 5, `${before} master blocks`);

    const master = await startServer({
      dataDir: masterDir,
      config: { ...config, retention_bytes: 3 * BLOCK },
    });
    servers.push(master);
    const first = Number(blockNames(masterDir)[0].slice(8));
    assert.ok(
      first > slaveBlocks,
      `master starts at message_${first}, past the slave's ${slaveBlocks} blocks`,
    );
    const summary = (await httpJson(`${master.httpBase}/summary`)).storage as Record<string, number>;
    assert.equal(summary.first_message_id, first * BLOCK + 32);
    assert.ok(summary.retention_bytes_reclaimed >= (first - 1) * BLOCK * 0.9);

    // A Go slave (no extension flag) with a cursor in a deleted block: refused, never streamed a hole.
    const go = await RawSyncSocket.connect(master.ports.sync);
    go.send(encodeSyncBegin(32));
    await waitFor(() => go.closed, { what: 'the Go slave link closed', timeoutMs: 5000 });
    assert.equal(go.frames.length, 0);
    await master.waitForLog(/cursor 32 lies in blocks deleted by retention/);

    const slave = await startServer({ dataDir: slaveDir, masterAddress: master.syncAddress, config });
    servers.push(slave);
    await slave.waitForLog(/lies before master .* first retained record \d+: deleted our \d+ block\(s\)/);
    await waitIdentical(masterDir, slaveDir);
    assert.equal(blockNames(slaveDir)[0], `message_${first}`);
    await master.waitForLog(/is behind this log's retention/);
  });
});
