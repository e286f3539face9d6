/**
 * Tests the two Go transports (gorpc, net/rpc) share: each support.ts describes its transport as a
 * GoTransport, and these check what both must do alike against the real server.
 */
import assert from 'node:assert/strict';
import * as net from 'node:net';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Cmd } from '../../src/format/constants.js';
import type { GobValue } from '../../src/rpc/gob/gob.js';
import { removeDir } from '../support/fixtures.js';
import { clientFor, freePortFor, imBody } from '../support/rpc-client.js';
import { startServer, type ServerProcess } from '../support/server-process.js';

/** What the shared tests use of a transport's client. */
export interface GoCaller {
  call(method: string, arg: Record<string, unknown>): Promise<GobValue>;
  readonly inFlight: number;
  close(): void;
}

/** A SyncMessage answer as calls.json records it. */
export interface RecordedSync {
  Messages: { MsgID: number }[];
  LastMsgID: number;
  HasMore?: boolean;
}

export interface GoTransport {
  /** As test names call it (`net/rpc`). */
  title: string;
  /** Its listen key (`netrpc_listen`). */
  key: 'gorpc_listen' | 'netrpc_listen';
  connect(server: ServerProcess): Promise<GoCaller>;
  /** What a call the server refused rejects with. */
  CallError: new (message: string) => Error;
  /** The MsgID of a SavePeerMessage answer. */
  savedId(v: GobValue): number;
  sync(v: GobValue): RecordedSync;
  /** `sync` of an empty queue's answer. */
  emptySync: RecordedSync;
}

/** Sends `bytes` on a new connection; resolves with what came back once the server closed it. */
export async function sendBad(port: number, bytes: Buffer): Promise<{ received: Buffer; localPort: number }> {
  const s = net.connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => s.once('connect', resolve).once('error', reject));
  const localPort = s.localPort!;
  const chunks: Buffer[] = [];
  s.on('data', (d: Buffer) => chunks.push(d));
  s.on('error', () => {});
  const closed = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('server did not close the connection in 5 s')), 5000);
    s.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  s.write(bytes);
  await closed;
  return { received: Buffer.concat(chunks), localPort };
}

export async function summary(server: ServerProcess): Promise<Record<string, unknown>> {
  const res = await fetch(`${server.httpBase}/summary`);
  return (await res.json()) as Record<string, unknown>;
}

/** A refused call carries the Nest transport's sentence as the error a Go caller sees. */
export async function assertRefusalsAsNest(
  t: GoTransport,
  server: ServerProcess,
  go: GoCaller,
): Promise<void> {
  const nest = clientFor(server);
  try {
    const nestMessage = await nest
      .savePeerMessage({ appId: 9, uid: 1, deviceId: 1, cmd: 99, raw: imBody(1, 2, 'x') })
      .then(
        () => 'accepted',
        (e: Error) => e.message,
      );
    await assert.rejects(
      go.call('SavePeerMessage', { AppID: 9, Uid: 1, DeviceID: 1, Cmd: 99, Raw: imBody(1, 2, 'x') }),
      (e: Error) =>
        e instanceof t.CallError &&
        e.message === nestMessage &&
        /^SavePeerMessage: cmd must be one of/.test(e.message),
    );
    await assert.rejects(
      go.call('GetLatestMessage', { AppID: 9, Uid: 1, Limit: 0 }),
      (e: Error) => e instanceof t.CallError && /^GetLatestMessage: limit must be at least 1/.test(e.message),
    );
  } finally {
    await nest.close();
  }
}

/** Calls over a Go transport count in /summary as Nest transport calls do. */
export async function assertCountedInSummary(server: ServerProcess, go: GoCaller): Promise<void> {
  const before = (await summary(server)) as Record<string, number>;
  await go.call('SavePeerMessage', { AppID: 9, Uid: 3, DeviceID: 1, Cmd: Cmd.IM, Raw: imBody(1, 3, 'c') });
  await go.call('SyncMessage', { AppID: 9, Uid: 3, DeviceID: 1, LastMsgID: 0 });
  const now = (await summary(server)) as Record<string, number>;
  assert.equal(now.request_count - before.request_count, 2);
  assert.equal(now.peer_message_count - before.peer_message_count, 1);
}

/**
 * 1,000 saves for 50 users of `app`, all in flight at once on `go`: every answer a distinct MsgID, and
 * each user's queue then holds exactly the ids its saves were answered with.
 */
export async function assertConcurrentSaves(t: GoTransport, go: GoCaller, app: number): Promise<void> {
  const users = 50;
  const saves = Array.from({ length: 1000 }, (_, i) =>
    go.call('SavePeerMessage', {
      AppID: app,
      Uid: 1 + (i % users),
      DeviceID: 1,
      Cmd: Cmd.IM,
      Raw: imBody(9, 1 + (i % users), `m${i}`),
    }),
  );
  assert.ok(go.inFlight >= 1000);
  const ids = (await Promise.all(saves)).map((v) => t.savedId(v));
  assert.equal(new Set(ids).size, 1000, 'distinct msgids');
  assert.equal(go.inFlight, 0);
  for (let u = 1; u <= users; u++) {
    const sync = t.sync(await go.call('SyncMessage', { AppID: app, Uid: u, DeviceID: 0, LastMsgID: 0 }));
    const mine = ids.filter((_, i) => 1 + (i % users) === u);
    assert.deepEqual(
      sync.Messages.map((m) => m.MsgID).sort((a, b) => a - b),
      mine.sort((a, b) => a - b),
    );
  }
}

/** On a slave the transport refuses writes as a read-only replica and answers reads. */
export function describeOnSlave(t: GoTransport): void {
  describe(`${t.title} on a slave`, () => {
    let server: ServerProcess;
    before(async () => {
      server = await startServer({
        masterAddress: `127.0.0.1:${await freePortFor()}`,
        config: { [t.key]: '127.0.0.1:0' },
        http: false,
      });
    });
    after(async () => {
      await server?.stop();
      if (server) removeDir(path.dirname(server.dataDir));
    });

    it('refuses writes as a read-only replica and answers reads', async () => {
      const go = await t.connect(server);
      try {
        await assert.rejects(
          go.call('SavePeerMessage', { AppID: 9, Uid: 1, DeviceID: 1, Cmd: Cmd.IM, Raw: imBody(1, 2, 'x') }),
          (e: Error) =>
            e instanceof t.CallError &&
            /^SavePeerMessage: read-only replica: this server replicates/.test(e.message),
        );
        assert.deepEqual(
          t.sync(await go.call('SyncMessage', { AppID: 9, Uid: 1, DeviceID: 1, LastMsgID: 0 })),
          t.emptySync,
        );
      } finally {
        go.close();
      }
    });
  });
}

/** A listen address already taken stops start-up with one line. */
export function describeListenTaken(t: GoTransport): void {
  describe(`${t.key} that cannot be used`, () => {
    it('stops start-up with one line naming the key, its value and the cause', async () => {
      const taken = net.createServer();
      await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
      const port = (taken.address() as net.AddressInfo).port;
      const server = await startServer({
        config: { [t.key]: `127.0.0.1:${port}` },
        http: false,
        waitReady: false,
      });
      try {
        const { code } = await server.waitExit();
        assert.equal(code, 1);
        assert.ok(
          server
            .lines()
            .some((l) => l.includes(`start-up failed: ${t.key}=127.0.0.1:${port}: address already in use`)),
          server.logText(),
        );
      } finally {
        taken.close();
        removeDir(path.dirname(server.dataDir));
      }
    });
  });
}
