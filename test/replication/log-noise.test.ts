/**
 * A failure that repeats on every reconnect is logged once, and the reconnects back off: a replica
 * whose disk is full (writes fail with ENOSPC, injected by a preload) against a live master.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import { ImsClient } from '../../src/client/index.js';
import { tempDir, removeDir } from '../support/fixtures.js';
import { startServer, killAll, type ServerProcess } from '../support/server-process.js';
import { waitFor } from '../support/wait.js';
import { httpJson, writePeer } from './support.js';

const WRITE_FAULT = fileURLToPath(new URL('../support/write-fault.js', import.meta.url));

describe('log noise on the replication link', () => {
  const servers: ServerProcess[] = [];
  const clients: ImsClient[] = [];
  const dirs: string[] = [];
  after(async () => {
    for (const c of clients) await c.close().catch(() => undefined);
    await killAll(servers);
    for (const d of dirs) removeDir(d);
  });

  it('a replica with a full disk says ENOSPC once and backs off, instead of an error every 100 ms', async () => {
    const work = tempDir('ims-enospc-');
    dirs.push(work);
    const full = path.join(work, 'disk-full');
    const master = await startServer({});
    servers.push(master);
    const slave = await startServer({
      masterAddress: master.syncAddress,
      nodeFlags: ['--import', WRITE_FAULT],
      env: { IMS_TEST_ENOSPC: full },
    });
    servers.push(slave);
    const c = new ImsClient({ host: '127.0.0.1', port: master.ports.rpc });
    clients.push(c);
    for (let i = 0; i < 10; i++) await writePeer(c, i);
    const caughtUp = async () =>
      ((await httpJson(`${slave.httpBase}/summary`)).replication as { slave: { caughtUp: boolean } }).slave
        .caughtUp;
    await waitFor(caughtUp, { what: 'the replica caught up' });
    const from = slave.lines().length;
    fs.writeFileSync(full, '');
    for (let i = 10; i < 15; i++) await writePeer(c, i);
    // Long enough for six reconnects at 100, 200, 400, 800, 1600, 3200 ms; a non-growing back-off of
    // 100 ms would make about 60 in the same time.
    await waitFor(
      () =>
        slave
          .lines()
          .slice(from)
          .some((l) => /reconnecting to master .* in 3200 ms/.test(l)),
      {
        what: () => `the back-off grown to 3200 ms:\n${slave.lines().slice(from).join('\n')}`,
        timeoutMs: 20000,
      },
    );
    const lines = slave.lines().slice(from);
    const backoffs = lines
      .map((l) => /reconnecting to master .* in (\d+) ms/.exec(l))
      .filter((m) => m !== null)
      .map((m) => Number(m[1]));
    assert.deepEqual(backoffs.slice(0, 6), [100, 200, 400, 800, 1600, 3200], lines.join('\n'));
    const errors = lines.filter((l) => /ERROR|WARN/.test(l));
    assert.ok(
      errors.length <= 2,
      `the failure is said once (or twice), not per reconnect:\n${errors.join('\n')}`,
    );
    assert.ok(
      errors.some((l) => /ENOSPC/.test(l)),
      `the failure is said:\n${lines.join('\n')}`,
    );
    assert.match(lines.join('\n'), /the same failure \d+ times: .*ENOSPC/);
  });
});
