import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { Logger } from '@nestjs/common';
import { removeDir, tempDir } from '../support/fixtures.js';
import { clientFor, imBody } from '../support/rpc-client.js';
import { startServer, type ServerProcess } from '../support/server-process.js';
import { waitFor } from '../support/wait.js';

// The test's own RPC clients log every reset the shutdowns cause; that is expected here.
Logger.overrideLogger(false);

const APP = 11n;
const BLOCK_SIZE = 1048576;
const USERS = 40;

interface Ack {
  uid: number;
  msgId: number;
}

/** Several clients saving peer messages as fast as acks come back, until told to stop or refused. */
function writeStream(server: ServerProcess, acked: Ack[], clients = 4) {
  let stopping = false;
  const loops = Array.from({ length: clients }, async (_, c) => {
    const client = clientFor(server, 8000);
    try {
      for (let i = 0; !stopping; i++) {
        const uid = 1 + ((c * 13 + i) % USERS);
        try {
          const r = await client.savePeerMessage({
            appId: APP,
            uid,
            deviceId: c,
            cmd: 4,
            raw: imBody(500 + c, uid, `c${c} n${i} ${'x'.repeat(40)}`),
          });
          acked.push({ uid, msgId: r.msgId });
        } catch {
          return; // refused while shutting down, or the connection went away
        }
      }
    } finally {
      await client.close().catch(() => undefined);
    }
  });
  return {
    /** Resolves when every client has stopped (after a refusal or stop()). */
    done: Promise.all(loops),
    stop: async () => {
      stopping = true;
      await Promise.all(loops);
    },
  };
}

async function waitForAcks(acked: Ack[], n: number): Promise<void> {
  await waitFor(() => acked.length >= n, {
    what: () => `${n} acks (${acked.length} so far)`,
    intervalMs: 10,
  });
}

/** Every acknowledged message is in its user's queue on this server. */
async function assertAllAcked(server: ServerProcess, acked: Ack[]): Promise<void> {
  const byUser = new Map<number, number[]>();
  for (const a of acked) byUser.set(a.uid, [...(byUser.get(a.uid) ?? []), a.msgId]);
  const client = clientFor(server);
  try {
    for (const [uid, ids] of byUser) {
      const r = await client.syncMessage({ appId: APP, uid, deviceId: 99, lastMsgId: 0 });
      assert.equal(r.hasMore, false);
      const found = new Set(r.messages.map((m) => m.msgId));
      for (const id of ids) assert.ok(found.has(id), `user ${uid} lost acknowledged message ${id}`);
    }
  } finally {
    await client.close();
  }
}

/** The log position the block files end at (block * size + bytes in the newest block). */
function logEnd(dataDir: string): number {
  const blocks = fs
    .readdirSync(dataDir)
    .map((f) => /^message_(\d+)$/.exec(f))
    .filter((m) => m !== null)
    .map((m) => Number(m[1]));
  const last = Math.max(...blocks);
  return last * BLOCK_SIZE + fs.statSync(path.join(dataDir, `message_${last}`)).size;
}

function processState(pid: number): string {
  return fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1][0];
}

describe('shutdown under a stream of writes', () => {
  const work = tempDir('ims-shutdown-');
  const dataDir = path.join(work, 'data');
  const acked: Ack[] = [];
  const servers: ServerProcess[] = [];
  const start = async () => {
    const s = await startServer({ dataDir, config: { block_size: BLOCK_SIZE } });
    servers.push(s);
    return s;
  };
  after(async () => {
    for (const s of servers) {
      await s.kill9();
      removeDir(path.dirname(s.configPath));
    }
    removeDir(work);
  });

  it('SIGTERM exits 0; after restart every acked message is there and the index was loaded, not rebuilt', async () => {
    const server = await start();
    const stream = writeStream(server, acked);
    await waitForAcks(acked, 300);
    const exit = await server.stop('SIGTERM');
    await stream.done;
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.match(server.logText(), /SIGTERM: shutting down/);
    assert.match(server.logText(), /closed storage: log fsynced, index files saved/);
    const state = JSON.parse(fs.readFileSync(path.join(dataDir, 'index_state'), 'utf8'));
    assert.equal(state.logEnd, logEnd(dataDir), 'index_state reflects the whole log');

    const again = await start();
    const opened = await again.waitForLog(/\[Storage\] opened /);
    assert.match(opened, /index loaded/);
    assert.doesNotMatch(opened, /rebuilt/);
    await assertAllAcked(again, acked);
    await again.stop();
  });

  it('SIGKILL under the same load loses nothing that was acknowledged (durability=sync)', async () => {
    const server = await start();
    const mark = acked.length;
    const stream = writeStream(server, acked);
    await waitForAcks(acked, mark + 300);
    await server.kill9();
    await stream.done;
    const again = await start();
    const opened = await again.waitForLog(/\[Storage\] opened /);
    assert.match(
      opened,
      /index repaired/,
      'the index saved at the last clean shutdown is repaired from the log',
    );
    await assertAllAcked(again, acked);
    await again.stop();
  });

  it('a second signal during shutdown exits at once, non-zero, and acked messages still survive', async () => {
    const server = await start();
    const mark = acked.length;
    const stream = writeStream(server, acked);
    await waitForAcks(acked, mark + 200);
    // Stopped, the process cannot begin its shutdown before both signals are pending: it sees them together.
    const pid = server.proc.pid!;
    server.proc.kill('SIGSTOP');
    await waitFor(() => processState(pid) === 'T', {
      what: () => `the server to be stopped (state ${processState(pid)})`,
      timeoutMs: 5000,
      intervalMs: 10,
    });
    server.proc.kill('SIGTERM');
    server.proc.kill('SIGINT');
    server.proc.kill('SIGCONT');
    const exit = await server.waitExit(5000);
    await stream.done;
    assert.equal(exit.signal, null);
    assert.ok(exit.code === 130 || exit.code === 143, `exit code ${exit.code}`);
    assert.match(server.logText(), /during shutdown: exiting now/);
    assert.doesNotMatch(server.logText(), /shutdown complete/);
    const again = await start();
    await assertAllAcked(again, acked);
    assert.equal((await again.stop()).code, 0);
  });
});
