/**
 * A v4 folder served end to end: the real server on a copy of the newest Go fixture (detected, no
 * setting) answers over the Nest transport as the newest Go did, and an ims slave with an empty folder
 * and no setting follows it byte for byte, becomes v4 and answers the same.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ImsClient } from '../../src/client/index.js';
import { NEWEST_FIXTURE_ROOT, copyFixtureDir, removeDir, tempDir } from '../support/fixtures.js';
import { clientFor } from '../support/rpc-client.js';
import { killAll, startServer, type ServerProcess } from '../support/server-process.js';
import { httpJson, waitIdentical } from './support.js';

interface Query {
  name: string;
  method: string;
  req: Record<string, number>;
  resp: unknown;
}

let queries: Query[];
before(() => {
  const manifest = JSON.parse(fs.readFileSync(path.join(NEWEST_FIXTURE_ROOT, 'manifest.json'), 'utf8')) as {
    queries: Query[];
  };
  queries = manifest.queries;
});

async function ask(client: ImsClient, q: Query): Promise<unknown> {
  const r = q.req;
  const toGo = (ms: { msgId: number; deviceId: bigint; cmd: number; raw: Buffer }[]) =>
    ms.map((m) => ({
      MsgID: m.msgId,
      DeviceID: Number(m.deviceId),
      Cmd: m.cmd,
      Raw: m.raw.toString('base64'),
    }));
  switch (q.method) {
    case 'SyncMessage': {
      const s = await client.syncMessage({
        appId: r.AppID,
        uid: r.Uid,
        deviceId: r.DeviceID ?? 0,
        lastMsgId: r.LastMsgID ?? 0,
      });
      return { Messages: toGo(s.messages), LastMsgID: s.lastMsgId, HasMore: s.hasMore };
    }
    case 'SyncGroupMessage': {
      const s = await client.syncGroupMessage({
        appId: r.AppID,
        uid: r.Uid,
        deviceId: r.DeviceID ?? 0,
        groupId: r.GroupID,
        lastMsgId: r.LastMsgID ?? 0,
        timestamp: r.Timestamp ?? 0,
      });
      return { Messages: toGo(s.messages), LastMsgID: s.lastMsgId, HasMore: s.hasMore };
    }
    case 'GetNewCount':
      return (
        await client.getNewCount({
          appId: r.AppID,
          uid: r.Uid,
          deviceId: r.DeviceID ?? 0,
          lastMsgId: r.LastMsgID ?? 0,
        })
      ).count;
    case 'GetLatestMessage':
      return {
        Messages: toGo(
          (await client.getLatestMessage({ appId: r.AppID, uid: r.Uid, limit: r.Limit })).messages,
        ),
      };
  }
  throw new Error(q.method);
}

/**
 * The queries the Nest transport carries: it refuses a negative LastMsgID and a GetLatestMessage limit
 * below 1 as bad input (Go read them as 0 and 1; the engine does too, see newest-fixture.test.ts).
 */
const carried = (q: Query) =>
  q.method !== 'Ping' &&
  !(q.method === 'GetLatestMessage' && q.req.Limit < 1) &&
  !((q.req.LastMsgID ?? 0) < 0);

describe('a v4 master and its ims slave', () => {
  const servers: ServerProcess[] = [];
  const clients: ImsClient[] = [];
  let masterDir: string;
  let slaveDir: string;
  let master: ServerProcess;
  let slave: ServerProcess;

  before(async () => {
    masterDir = copyFixtureDir('clean', NEWEST_FIXTURE_ROOT);
    slaveDir = path.join(tempDir(), 'data');
    master = await startServer({ dataDir: masterDir });
    servers.push(master);
    slave = await startServer({ dataDir: slaveDir, masterAddress: master.syncAddress });
    servers.push(slave);
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await killAll(servers);
    removeDir(masterDir);
    removeDir(path.dirname(slaveDir));
  });

  it('the master answers every query over the Nest transport as the newest Go did', async () => {
    const client = clientFor(master);
    clients.push(client);
    const summary = await httpJson(`${master.httpBase}/summary`);
    assert.equal((summary.storage as Record<string, unknown>).queue_format, 'v4');
    let n = 0;
    for (const q of queries.filter(carried)) {
      assert.deepEqual(await ask(client, q), q.resp, q.name);
      n++;
    }
    assert.ok(n > 300);
  });

  it('a save answers prevMsgId, and the slave holds the master bytes, serves v4 and answers the same', async () => {
    const client = clientFor(master);
    clients.push(client);
    const before2 = await client.syncMessage({ appId: 7, uid: 10001, deviceId: 1, lastMsgId: 0 });
    const count = (await client.getNewCount({ appId: 7, uid: 10001, deviceId: 1, lastMsgId: 0 })).count;
    const body = Buffer.concat([Buffer.alloc(24), Buffer.from('hello v4')]);
    const saved = await client.savePeerMessage({ appId: 7, uid: 10001, deviceId: 1, cmd: 4, raw: body });
    assert.ok(saved.prevMsgId > 0);
    assert.equal(
      (await client.getNewCount({ appId: 7, uid: 10001, deviceId: 1, lastMsgId: 0 })).count,
      count + 1,
    );
    assert.equal(
      (await client.getNewCount({ appId: 7, uid: 10001, deviceId: 1, lastMsgId: saved.prevMsgId })).count,
      1,
    );
    assert.equal(before2.hasMore, true);
    // CustomerMessageV2 (cmd 64), which the newest im sends for customer service; v4 only.
    const customer = Buffer.concat([Buffer.alloc(36), Buffer.from('{"text":"kefu"}')]);
    const c = await client.savePeerMessage({ appId: 7, uid: 10001, deviceId: 1, cmd: 64, raw: customer });
    const latest = await client.getLatestMessage({ appId: 7, uid: 10001, limit: 1 });
    assert.deepEqual(
      latest.messages.map((m) => [m.msgId, m.cmd, m.raw.equals(customer)]),
      [[c.msgId, 64, true]],
    );
    await assert.rejects(
      client.savePeerMessage({ appId: 7, uid: 10001, deviceId: 1, cmd: 24, raw: customer }),
      /cmd 24 is not a message kind ims stores in a v4 folder/,
    );

    await waitIdentical(masterDir, slaveDir);
    const slaveClient = clientFor(slave);
    clients.push(slaveClient);
    const summary = await httpJson(`${slave.httpBase}/summary`);
    assert.equal((summary.storage as Record<string, unknown>).queue_format, 'v4');
    for (const q of queries
      .filter(carried)
      .filter((q) => q.method !== 'GetNewCount' || q.req.Uid !== 10001)) {
      assert.deepEqual(await ask(slaveClient, q), await ask(client, q), `slave: ${q.name}`);
    }
    await slave.stop();
    assert.ok(fs.existsSync(path.join(slaveDir, 'peer_index.v3')));
    assert.ok(!fs.existsSync(path.join(slaveDir, 'peer_index')));
  });
});
