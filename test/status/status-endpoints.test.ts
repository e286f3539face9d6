import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { WRITE_PROBE_FILE } from '../../src/status/indicators/storage.health.js';
import { removeDir } from '../support/fixtures.js';
import { clientFor, imBody } from '../support/rpc-client.js';
import { startServer, type ServerProcess } from '../support/server-process.js';

const APP = 7n;

async function getJson(server: ServerProcess, route: string): Promise<{ status: number; body: any }> {
  const res = await fetch(`${server.httpBase}${route}`);
  return { status: res.status, body: await res.json() };
}

describe('status endpoints (/summary, /stack, /health)', () => {
  let server: ServerProcess;
  before(async () => {
    server = await startServer({ config: { block_size: 1048576 }, flags: ['-v=1'] });
  });
  after(async () => {
    await server.stop();
    removeDir(path.dirname(server.configPath));
  });

  it('/summary counts RPC requests and saved peer and group messages (Go names), with runtime figures', async () => {
    const before = (await getJson(server, '/summary')).body;
    assert.equal(before.request_count, 0);
    const client = clientFor(server);
    try {
      for (let i = 0; i < 5; i++) {
        await client.savePeerMessage({
          appId: APP,
          uid: 100 + i,
          deviceId: 1,
          cmd: 4,
          raw: imBody(1, 100 + i, `m${i}`),
        });
      }
      await client.saveGroupMessage({ appId: APP, groupId: 9, deviceId: 1, cmd: 8, raw: imBody(1, 9, 'g') });
      await client.syncMessage({ appId: APP, uid: 100, deviceId: 1, lastMsgId: 0 });
    } finally {
      await client.close();
    }
    const { status, body } = await getJson(server, '/summary');
    assert.equal(status, 200);
    assert.equal(body.request_count, 7);
    assert.equal(body.peer_message_count, 5);
    assert.equal(body.group_message_count, 1);
    assert.ok(body.active_resources > 0, 'goroutine stand-in: live handles');
    assert.ok(body.rss > 0 && body.heap_used > 0);
    assert.ok(typeof body.event_loop.delay_p99_ms === 'number');
    assert.ok(body.storage.next_message_id > before.storage.next_message_id);
    assert.equal(
      body.storage.durable_message_id,
      body.storage.next_message_id,
      'durability=sync: all acked is durable',
    );
    assert.equal(body.storage.write_block, 0);
    assert.equal(body.storage.write_block_size, body.storage.next_message_id);
    assert.equal(body.storage.peer_index_entries, 5, 'one queue per uid saved to');
    assert.equal(body.storage.group_index_entries, 1);
    assert.equal(body.replication.role, 'master');
  });

  it('/stack answers a diagnostic report as JSON (stacks, handles, no environment) and logs it', async () => {
    const { status, body } = await getJson(server, '/stack');
    assert.equal(status, 200);
    assert.ok(Array.isArray(body.javascriptStack?.stack) || typeof body.javascriptStack === 'object');
    assert.ok(Array.isArray(body.libuv) && body.libuv.some((h: { type: string }) => h.type === 'tcp'));
    assert.equal(body.environmentVariables, undefined);
    await server.waitForLog(/\[Status\] stack report: \{/);
  });

  it('/health/live is 200 with the event loop up', async () => {
    const { status, body } = await getJson(server, '/health/live');
    assert.equal(status, 200);
    assert.equal(body.status, 'ok');
    assert.equal(body.details.event_loop.status, 'up');
  });

  it('/health/ready is 503 while the storage folder cannot be written, and 200 again once it can', async () => {
    assert.equal((await getJson(server, '/health/ready')).status, 200);
    // Root ignores permissions, so break the write a way root cannot get around: the probe path is a folder.
    const probe = path.join(server.dataDir, WRITE_PROBE_FILE);
    fs.mkdirSync(probe);
    try {
      const { status, body } = await getJson(server, '/health/ready');
      assert.equal(status, 503);
      assert.equal(body.status, 'error');
      assert.equal(body.error.storage.status, 'down');
      assert.match(body.error.storage.message, /cannot write in/);
      assert.equal(body.details.disk.status, 'up');
    } finally {
      fs.rmdirSync(probe);
    }
    const { status, body } = await getJson(server, '/health/ready');
    assert.equal(status, 200);
    assert.equal(body.details.storage.status, 'up');
    assert.ok(!fs.existsSync(probe), 'the probe file is removed after each check');
  });

  it('-v=1 turns on debug lines (the flush jobs describe themselves at start-up)', async () => {
    await server.waitForLog(/DEBUG \[FlushJobs\] fsync every 1000 ms when dirty/);
  });
});
