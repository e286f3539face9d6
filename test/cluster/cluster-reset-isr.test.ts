/**
 * `ims cluster reset-isr`, the way out for a shard whose recorded in-sync set holds only dead nodes,
 * with a real etcd and real nodes: it refuses without --accept-data-loss and says what would be lost;
 * with it, the live node is recorded alone and takes the shard over.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { ImsClient } from '../../src/client/index.js';
import { Cmd } from '../../src/format/constants.js';
import { EtcdProcess } from '../support/etcd.js';
import { imBody } from '../support/rpc-client.js';
import {
  MAIN_JS,
  startServer,
  killAll,
  type ServerOptions,
  type ServerProcess,
} from '../support/server-process.js';
import { waitFor } from '../support/wait.js';
import { httpJson } from '../replication/support.js';

interface Summary {
  cluster: { role: string; epoch: number } | null;
}

function cli(args: string[]) {
  const r = spawnSync(process.execPath, [MAIN_JS, 'cluster', ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('ims cluster reset-isr', () => {
  let etcd: EtcdProcess;
  const servers: ServerProcess[] = [];
  const clients: ImsClient[] = [];
  before(async () => {
    etcd = await EtcdProcess.start();
  });
  after(async () => {
    for (const c of clients) await c.close().catch(() => undefined);
    await killAll(servers);
    await etcd?.stop();
  });
  const node = async (name: string, o: ServerOptions = {}) => {
    const s = await startServer({
      ...o,
      config: { etcd_endpoints: etcd.endpoint, cluster_name: 'ri', shard: 0, node_name: name, ...o.config },
    });
    servers.push(s);
    return s;
  };
  const role = async (s: ServerProcess) =>
    ((await httpJson(`${s.httpBase}/summary`)) as unknown as Summary).cluster?.role;
  const recorded = () => {
    const r = cli(['status', '--etcd', etcd.endpoint, '--cluster', 'ri', '--json']);
    return (JSON.parse(r.out) as { shards: { inSync: string[] }[] }).shards[0].inSync;
  };
  const save = (s: ServerProcess, i: number) => {
    const c = new ImsClient({ host: '127.0.0.1', port: s.ports.rpc, timeoutMs: 5000 });
    clients.push(c);
    return c.savePeerMessage({
      appId: 1,
      uid: 900n + BigInt(i % 3),
      deviceId: 1,
      cmd: Cmd.IM,
      raw: imBody(1, 2, `r${i}`),
    });
  };
  const reset = (...extra: string[]) =>
    cli(['reset-isr', '--etcd', etcd.endpoint, '--cluster', 'ri', '--shard', '0', ...extra]);

  it('refuses without --accept-data-loss, naming what is lost; with it, the live node takes the shard over', async () => {
    assert.equal(cli(['init', '--etcd', etcd.endpoint, '--cluster', 'ri', '--shards', '1']).code, 0);
    const nodes = new Map([
      ['ra', await node('ra')],
      ['rb', await node('rb')],
      ['rc', await node('rc')],
    ]);
    const master = await waitFor(
      async () => {
        for (const [name, n] of nodes) if ((await role(n)) === 'master') return name;
        return null;
      },
      { what: 'an elected master', timeoutMs: 20000, intervalMs: 100 },
    );
    await waitFor(() => recorded().length === 3, { what: () => `all three in sync (${recorded().join()})` });
    const [left, other] = [...nodes.keys()].filter((n) => n !== master);
    const m = nodes.get(master)!;
    for (let i = 0; i < 5; i++) await save(m, i);
    // One replica dies; the master and the other replica go on acknowledging saves it never gets.
    const leftDir = nodes.get(left)!.dataDir;
    await nodes.get(left)!.kill9();
    const members = [master, other].sort().join();
    await waitFor(() => recorded().join() === members, {
      what: () => `the set recorded as ${members} (${recorded().join()})`,
    });
    let lastAcked = 0;
    for (let i = 5; i < 10; i++) lastAcked = (await save(m, i)).msgId;
    // Then both members of the recorded set die: no live node may lead.
    await nodes.get(other)!.kill9();
    await m.kill9();
    const back = await node(left, { dataDir: leftDir });
    await waitFor(
      () => cli(['status', '--etcd', etcd.endpoint, '--cluster', 'ri']).out.includes(`${left}  rpc`),
      {
        what: `${left} registered`,
      },
    );
    assert.notEqual(await role(back), 'master');
    // The set the last master recorded (itself alone, once the other member died too).
    const gone = recorded();
    assert.ok(!gone.includes(left));

    const refused = reset();
    assert.equal(refused.code, 1, refused.out + refused.err);
    assert.match(
      refused.err,
      new RegExp(
        `the recorded in-sync set \\(epoch \\d+\\) is ${gone.join(', ')}, none of them alive \\(live: ${left} at (\\d+)\\)\\.\\n` +
          `Refusing to record ${left} alone without --accept-data-loss\\. ${left}'s log ends at \\d+\\. ` +
          `Every save that the master of epoch \\d+ acknowledged past that is lost for good \\(and its msgId can be ` +
          `given to another message\\): only ${gone.join(', ')} (is|are) sure to hold it\\.`,
      ),
    );
    const end = Number(new RegExp(`live: ${left} at (\\d+)`).exec(refused.err)![1]);
    assert.ok(
      end <= lastAcked,
      `what it names as lost is real: ${left} ends at ${end}, ${master} acknowledged ${lastAcked}`,
    );
    assert.deepEqual(recorded(), gone, 'nothing written when refused');
    assert.notEqual(await role(back), 'master');

    const done = reset('--accept-data-loss');
    assert.equal(done.code, 0, done.out + done.err);
    assert.match(
      done.out,
      new RegExp(`Recorded ${left} as the only in-sync member: it takes the shard over`),
    );
    await waitFor(async () => (await role(back)) === 'master', {
      what: `${left} leading after the reset`,
      timeoutMs: 20000,
      intervalMs: 100,
    });
    assert.deepEqual(recorded(), [left]);
    // (It acknowledges again once another node joins its in-sync set: min_insync_replicas is 1.)
    // With a master, there is nothing to reset.
    const again = reset('--accept-data-loss');
    assert.equal(again.code, 1);
    assert.match(again.err, new RegExp(`shard 0 has a master \\(${left}, epoch \\d+\\): nothing to reset`));
  });
});
