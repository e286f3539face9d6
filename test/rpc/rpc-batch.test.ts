import assert from 'node:assert/strict';
import * as net from 'node:net';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { Controller, Logger, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { MessagePattern, Transport, type MicroserviceOptions } from '@nestjs/microservices';
import { ImsClient, ImsRpcError, type SaveReply } from '../../src/client/index.js';
import { Cmd } from '../../src/format/constants.js';
import { removeDir, tempDir } from '../support/fixtures.js';
import { blockFilesSize, clientFor, freePortFor, imBody, rawServerFixture } from '../support/rpc-client.js';
import { startServer } from '../support/server-process.js';
import { waitFor } from '../support/wait.js';

const b64 = (b: Buffer) => b.toString('base64');
const APP = 21;

/** A loopback TCP proxy that counts the request packets of each pattern going to the server. */
class CountingProxy {
  readonly patterns = new Map<string, number>();
  private readonly server: net.Server;
  port = 0;

  constructor(private readonly target: number) {
    this.server = net.createServer((down) => {
      const up = net.connect(this.target, '127.0.0.1');
      down.on('data', (chunk) => {
        for (const m of chunk.toString('latin1').matchAll(/"pattern":"(\w+)"/g))
          this.patterns.set(m[1], (this.patterns.get(m[1]) ?? 0) + 1);
      });
      down.pipe(up).pipe(down);
      const close = () => {
        down.destroy();
        up.destroy();
      };
      down.on('error', close).on('close', close);
      up.on('error', close).on('close', close);
    });
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  close(): void {
    this.server.close();
  }
}

/** Every user's replies chain: sorted by id, each prevMsgId is the user's previous msgId (0 first). */
function assertChains(results: { uid: number; r: SaveReply }[]): void {
  const byUser = new Map<number, SaveReply[]>();
  for (const { uid, r } of results) byUser.set(uid, [...(byUser.get(uid) ?? []), r]);
  for (const [uid, replies] of byUser) {
    replies.sort((a, b) => a.msgId - b.msgId);
    replies.forEach((r, i) =>
      assert.equal(r.prevMsgId, i === 0 ? 0 : replies[i - 1].msgId, `user ${uid} reply ${i}`),
    );
  }
}

describe('SavePeerMessages (several saves in one packet)', () => {
  const fx = rawServerFixture();

  it('saves the good items in order and refuses each bad one with the error a single save gets', async () => {
    const { rpc } = fx;
    const good = (uid: number, text: string) => ({
      appId: APP,
      uid,
      deviceId: 3,
      cmd: Cmd.IM,
      raw: b64(imBody(9, uid, text)),
    });
    const bad = [
      { ...good(1, 'x'), appId: -1 },
      { ...good(1, 'x'), cmd: Cmd.ACK },
      { ...good(1, 'x'), raw: b64(Buffer.alloc(10)) },
      'not an object',
    ];
    const messages = [good(1, 'one'), bad[0], good(2, 'two'), bad[1], good(1, 'three'), bad[2], bad[3]];
    const res = await rpc.call('SavePeerMessages', { messages });
    assert.ok(res.ok, JSON.stringify(res));
    const results = (res.value as { results: ({ msgId: number; prevMsgId: number } | { error: string })[] })
      .results;
    assert.equal(results.length, messages.length);

    // Each refused item carries exactly what SavePeerMessage answers for the same payload.
    for (const [i, payload] of [
      [1, bad[0]],
      [3, bad[1]],
      [5, bad[2]],
      [6, bad[3]],
    ] as const) {
      const single = await rpc.call('SavePeerMessage', payload);
      assert.equal(single.ok, false);
      assert.deepEqual(results[i], { error: (single as { message: string }).message }, `item ${i}`);
    }
    // The good ones were saved, chained per user, and nothing else was written.
    const [one, two, three] = [results[0], results[2], results[4]] as { msgId: number; prevMsgId: number }[];
    assert.equal(one.prevMsgId, 0);
    assert.equal(two.prevMsgId, 0);
    assert.equal(three.prevMsgId, one.msgId);
    assert.ok(one.msgId < two.msgId && two.msgId < three.msgId);
    const synced = await rpc.call('SyncMessage', { appId: APP, uid: 1, deviceId: 0, lastMsgId: 0 });
    assert.ok(synced.ok);
    const msgs = (synced.value as { messages: { msgId: number; raw: string }[] }).messages;
    // Newest first, as Go's SyncMessage answers.
    assert.deepEqual(
      msgs.map((m) => m.msgId),
      [three.msgId, one.msgId],
    );
    assert.equal(Buffer.from(msgs[0].raw, 'base64').subarray(24).toString(), 'three');
  });

  it('refuses a batch that is not a non-empty array of at most 1000 items, and writes nothing', async () => {
    const { server, rpc } = fx;
    const size = blockFilesSize(server.dataDir);
    const item = { appId: APP, uid: 5, deviceId: 1, cmd: Cmd.IM, raw: b64(imBody(1, 5, 'x')) };
    const cases: [unknown, RegExp][] = [
      [{}, /messages must be an array/],
      [{ messages: item }, /messages must be an array/],
      [{ messages: [] }, /messages must not be empty/],
      [{ messages: Array.from({ length: 1001 }, () => item) }, /messages has more than 1000 items/],
      [[item], /payload must be a JSON object/],
    ];
    for (const [payload, expected] of cases) {
      const res = await rpc.call('SavePeerMessages', payload);
      assert.equal(res.ok, false, JSON.stringify(payload).slice(0, 80));
      assert.match((res as { message: string }).message, /^SavePeerMessages: /);
      assert.match((res as { message: string }).message, expected);
    }
    assert.equal(blockFilesSize(server.dataDir), size);
  });

  it('ImsClient sends concurrent saves as batches; every caller gets its own ids and errors', async () => {
    const { server } = fx;
    const proxy = new CountingProxy(server.ports.rpc);
    await proxy.listen();
    const client = new ImsClient({ host: '127.0.0.1', port: proxy.port });
    const unbatched = new ImsClient({ host: '127.0.0.1', port: server.ports.rpc, batchSaves: false });
    try {
      await client.connect();
      const CALLS = 300;
      const calls = Array.from({ length: CALLS }, (_, i) => {
        const uid = 100 + (i % 17);
        return client
          .savePeerMessage({ appId: APP, uid, deviceId: 1, cmd: Cmd.IM, raw: imBody(9, uid, `m${i}`) })
          .then((r) => ({ uid, r }));
      });
      // One bad call among them fails alone, with the message an unbatched call gets.
      const badCall = { appId: APP, uid: 100, deviceId: 1, cmd: Cmd.IM, raw: Buffer.alloc(5) };
      const badBatched = client.savePeerMessage(badCall).then(
        () => assert.fail('accepted a 5-byte IM body'),
        (err: unknown) => err,
      );
      const results = await Promise.all(calls);
      const err = (await badBatched) as ImsRpcError;
      const errAlone = await unbatched.savePeerMessage(badCall).then(
        () => assert.fail('accepted a 5-byte IM body'),
        (e: unknown) => e as ImsRpcError,
      );
      assert.ok(err instanceof ImsRpcError);
      assert.equal(err.pattern, 'SavePeerMessage');
      assert.equal(err.message, errAlone.message);

      assert.equal(new Set(results.map((x) => x.r.msgId)).size, CALLS);
      assertChains(results);
      const batches = proxy.patterns.get('SavePeerMessages') ?? 0;
      const singles = proxy.patterns.get('SavePeerMessage') ?? 0;
      assert.ok(batches >= 1, `no batch sent: ${JSON.stringify([...proxy.patterns])}`);
      assert.ok(batches + singles < CALLS / 10, `${batches} batches + ${singles} singles for ${CALLS} calls`);
      // What the callers were told is what sync returns.
      const sync = await client.syncMessage({ appId: APP, uid: 100, deviceId: 0, lastMsgId: 0 });
      assert.deepEqual(
        sync.messages.map((m) => m.msgId).sort((a, b) => a - b),
        results
          .filter((x) => x.uid === 100)
          .map((x) => x.r.msgId)
          .sort((a, b) => a - b),
      );
    } finally {
      await client.close();
      await unbatched.close();
      proxy.close();
    }
  });
});

@Controller()
class SingleSaveOnly {
  saves = 0;

  @MessagePattern('SavePeerMessage')
  save() {
    this.saves++;
    return { msgId: this.saves * 100, prevMsgId: 0 };
  }
}

@Module({ controllers: [SingleSaveOnly] })
class OlderServerModule {}

describe('ImsClient against a server without SavePeerMessages', () => {
  it('falls back to single SavePeerMessage calls and every call succeeds', async () => {
    Logger.overrideLogger(false);
    const port = await freePortFor();
    const app = await NestFactory.createMicroservice<MicroserviceOptions>(OlderServerModule, {
      transport: Transport.TCP,
      options: { host: '127.0.0.1', port },
      logger: false,
    });
    await app.listen();
    const client = new ImsClient({ host: '127.0.0.1', port });
    try {
      const replies = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          client.savePeerMessage({ appId: 1, uid: i, deviceId: 1, cmd: Cmd.IM, raw: imBody(1, i, 'x') }),
        ),
      );
      const ids = replies.map((r) => r.msgId).sort((a, b) => a - b);
      assert.deepEqual(
        ids,
        Array.from({ length: 20 }, (_, i) => (i + 1) * 100),
      );
      assert.equal(app.get(SingleSaveOnly).saves, 20);
    } finally {
      await client.close();
      await app.close();
    }
  });
});

describe('batched saves and SIGKILL', () => {
  const work = tempDir('ims-batch-kill-');
  after(() => removeDir(work));

  it('every batched save acknowledged before a SIGKILL is there after restart (durability=sync)', async () => {
    const dataDir = path.join(work, 'data');
    const server = await startServer({ dataDir, config: { block_size: 1048576 } });
    const acked: { uid: number; msgId: number }[] = [];
    const client = clientFor(server, 8000);
    let stop = false;
    // 64 callers on one connection: the client batches what they send in the same tick.
    const callers = Array.from({ length: 64 }, async (_, c) => {
      for (let i = 0; !stop; i++) {
        const uid = 1 + ((c * 7 + i) % 50);
        try {
          const r = await client.savePeerMessage({
            appId: APP,
            uid,
            deviceId: c,
            cmd: Cmd.IM,
            raw: imBody(c, uid, `c${c} n${i}`),
          });
          acked.push({ uid, msgId: r.msgId });
        } catch {
          return;
        }
      }
    });
    await waitFor(() => acked.length >= 3000, {
      what: () => `3000 acked saves (${acked.length} so far)`,
      intervalMs: 5,
    });
    await server.kill9();
    stop = true;
    await Promise.all(callers);
    await client.close().catch(() => undefined);

    const again = await startServer({ dataDir, config: { block_size: 1048576 } });
    const reader = clientFor(again);
    try {
      const byUser = new Map<number, Set<number>>();
      for (const a of acked) byUser.set(a.uid, (byUser.get(a.uid) ?? new Set()).add(a.msgId));
      for (const [uid, ids] of byUser) {
        const found = new Set<number>();
        let last = 0;
        for (;;) {
          const r = await reader.syncMessage({ appId: APP, uid, deviceId: 999, lastMsgId: last });
          for (const m of r.messages) found.add(m.msgId);
          if (!r.hasMore || r.messages.length === 0) break;
          last = r.lastMsgId;
        }
        for (const id of ids) assert.ok(found.has(id), `user ${uid} lost acknowledged message ${id}`);
      }
    } finally {
      await reader.close();
      await again.stop();
      removeDir(path.dirname(server.configPath));
      removeDir(path.dirname(again.configPath));
    }
  });
});
