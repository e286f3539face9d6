import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { REPO_ROOT } from '../support/fixtures.js';
import { RawRpcClient, clientFor, imBody } from '../support/rpc-client.js';
import { scrape } from '../support/prometheus.js';
import { startServer, type ServerProcess } from '../support/server-process.js';
import { waitFor } from '../support/wait.js';

describe('GET /metrics: Prometheus text with Node defaults and ims_ metrics', () => {
  let master: ServerProcess;
  let slave: ServerProcess;

  before(async () => {
    master = await startServer({ config: { block_size: 65536 } });
    slave = await startServer({ masterAddress: master.syncAddress, config: { block_size: 65536 } });
  });
  after(async () => {
    await slave?.stop();
    await master?.stop();
  });

  it('parses, has the default Node metrics, and its ims_ values move with traffic', async () => {
    const before = await scrape(master.httpBase);
    assert.equal(before.types.get('ims_rpc_requests_total'), 'counter');
    assert.equal(before.types.get('ims_rpc_duration_seconds'), 'histogram');
    assert.ok((before.value('process_resident_memory_bytes') ?? 0) > 0, 'Node default metrics are served');
    assert.ok(before.value('nodejs_heap_size_used_bytes') !== undefined);
    assert.equal(before.value('ims_blocks'), 1);

    const client = clientFor(master);
    // 40 bodies of ~2 KB: more than one 64 KiB block, so a block roll and an index save happen.
    const saves = [];
    for (let i = 0; i < 40; i++)
      saves.push(
        client.savePeerMessage({
          appId: 1,
          uid: 7,
          deviceId: 1,
          cmd: 4,
          raw: imBody(1, 7, 'x'.repeat(2000)),
        }),
      );
    await Promise.all(saves);
    await client.syncMessage({ appId: 1, uid: 7, deviceId: 1, lastMsgId: 0 });
    const raw = new RawRpcClient(master);
    const refused = await raw.call('SavePeerMessage', { appId: 1, uid: 7, deviceId: 1, cmd: 4, raw: '%%%' });
    assert.equal(refused.ok, false);
    raw.close();
    await client.close();

    const now = await scrape(master.httpBase);
    // Index saves run every 5 minutes or at shutdown: only the family's presence is checked here.
    assert.equal(now.types.get('ims_index_save_duration_seconds'), 'histogram');
    // The client batches concurrent saves into SavePeerMessages requests.
    const okBatches =
      now.value('ims_rpc_requests_total', { pattern: 'SavePeerMessages', outcome: 'ok' }) ?? 0;
    assert.ok(okBatches >= 1, `SavePeerMessages ok: ${okBatches}`);
    assert.equal(now.value('ims_rpc_requests_total', { pattern: 'SavePeerMessage', outcome: 'error' }), 1);
    assert.equal(now.value('ims_rpc_requests_total', { pattern: 'SyncMessage', outcome: 'ok' }), 1);
    assert.equal(
      now.value('ims_rpc_duration_seconds_count', { pattern: 'SyncMessage' }),
      1,
      'latency observed per pattern',
    );
    assert.equal(now.value('ims_messages_stored_total', { kind: 'peer' }), 40);
    assert.ok((now.value('ims_bytes_written_total') ?? 0) > 40 * 2000);
    assert.ok((now.value('ims_fsync_duration_seconds_count') ?? 0) >= 1);
    // Group commit: the fsyncs released all 40 saves between them.
    assert.ok((now.value('ims_fsync_group_size_sum') ?? 0) >= 1);
    assert.ok((now.value('ims_blocks') ?? 0) >= 2, 'the 64 KiB block rolled over');
    assert.ok((now.value('ims_storage_folder_bytes') ?? 0) > 80_000);
    assert.equal(now.value('ims_fsync_failures_total'), 0);
    assert.equal(now.value('ims_torn_tail_cuts_total'), 0);
  });

  it('shows replication: lag and in-sync state per replica on the master, applied records on the slave', async () => {
    const client = clientFor(master);
    await client.savePeerMessage({ appId: 1, uid: 8, deviceId: 1, cmd: 4, raw: imBody(1, 8, 'repl') });
    await client.close();
    const m = await waitFor(
      async () => {
        const s = await scrape(master.httpBase);
        const inSync = s.all('ims_replication_in_sync');
        return inSync.length === 1 &&
          inSync[0].value === 1 &&
          s.all('ims_replication_lag_bytes')[0]?.value === 0
          ? s
          : null;
      },
      { what: 'the slave in sync on the master' },
    );
    const replica = m.all('ims_replication_lag_bytes')[0].labels.replica;
    assert.match(replica, /^127\.0\.0\.1:\d+$/);
    assert.equal(m.value('ims_replication_lag_seconds', { replica }), 0);
    assert.equal(m.all('ims_slave_connected').length, 0, 'a master has no slave-link series');
    const s = await waitFor(
      async () => {
        const sc = await scrape(slave.httpBase);
        return (sc.value('ims_slave_records_applied_total') ?? 0) > 0 ? sc : null;
      },
      { what: 'records applied on the slave' },
    );
    assert.equal(s.value('ims_slave_connected', { master: master.syncAddress }), 1);
    assert.equal(s.value('ims_slave_lag_bytes', { master: master.syncAddress }), 0);
    // 41 saves: each a message record and a queue entry.
    assert.equal(s.value('ims_slave_records_applied_total'), 82);
  });

  it('the Grafana dashboard and the scrape annotations name what the server serves', async () => {
    const served = await scrape(master.httpBase);
    const dashboard = fs.readFileSync(path.join(REPO_ROOT, 'deploy/grafana-dashboard.json'), 'utf8');
    const exprs = (JSON.parse(dashboard) as { panels: { targets: { expr: string }[] }[] }).panels.flatMap(
      (p) => p.targets.map((t) => t.expr),
    );
    const names = new Set(exprs.flatMap((e) => e.match(/\b(?:ims|nodejs|process)_[a-z0-9_]+/g) ?? []));
    assert.ok(names.size >= 20, `dashboard metrics: ${[...names].join(', ')}`);
    for (const name of names) {
      const family = name.replace(/_(bucket|sum|count)$/, '');
      assert.ok(served.types.has(family), `the dashboard uses ${name}, which /metrics does not serve`);
    }
    const manifest = fs.readFileSync(path.join(REPO_ROOT, 'deploy/statefulset.yaml'), 'utf8');
    assert.match(manifest, /prometheus\.io\/scrape: 'true'/);
    const port = /prometheus\.io\/port: '(\d+)'/.exec(manifest)?.[1];
    assert.match(manifest, new RegExp(`http_listen_address=:${port}\\b`), 'scrapes the HTTP status port');
  });
});
