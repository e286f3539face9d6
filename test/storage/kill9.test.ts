import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import { MessageStore } from '../../src/storage/index.js';
import { removeDir, tempDir } from '../support/fixtures.js';
import { APP } from '../support/workload.js';

const WRITER = path.join(path.dirname(fileURLToPath(import.meta.url)), '../support/store-writer.js');

/** Runs the writer, SIGKILLs it after `acks` durable acks; returns the acked (msgId, owner) pairs. */
async function writeAndKill(
  root: string,
  seed: number,
  acks: number,
): Promise<{ id: number; owner: string }[]> {
  const child = spawn(process.execPath, [WRITER, root, String(seed)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const acked: { id: number; owner: string }[] = [];
  let buf = '';
  await new Promise<void>((resolve, reject) => {
    child.on('exit', () => resolve());
    child.on('error', reject);
    child.stdout.on('data', (chunk: Buffer) => {
      buf += chunk.toString();
      const lines = buf.split('\n');
      buf = lines.pop()!;
      for (const l of lines) {
        const m = /^ack (\d+) (\w+)$/.exec(l);
        if (m) acked.push({ id: Number(m[1]), owner: m[2] });
      }
      if (acked.length >= acks && child.exitCode === null) child.kill('SIGKILL');
    });
  });
  return acked;
}

describe('kill -9 while writing (nothing acknowledged is lost)', () => {
  const root = tempDir();
  after(() => removeDir(root));

  for (const round of [1, 2, 3]) {
    it(`round ${round}: every acknowledged message is readable in its chain after restart, and repair equals rebuild`, async () => {
      const acked = await writeAndKill(root, round, 1500 + round * 700);
      assert.ok(acked.length >= 1500);
      const store = MessageStore.open({ root, blockSize: 256 * 1024 });
      const owners = new Map<string, Set<number>>();
      for (const a of acked) {
        if (!owners.has(a.owner)) owners.set(a.owner, new Set());
        owners.get(a.owner)!.add(a.id);
      }
      const repairedAnswers: string[] = [];
      for (const [owner, ids] of owners) {
        const n = BigInt(owner.slice(1));
        const res = owner[0] === 'g' ? store.syncGroupMessage(APP, n, 0, 0) : store.syncMessage(APP, n, 0);
        const found = new Set(res.messages.map((m) => m.msgId));
        if (owner[0] === 'g') {
          // Group sync returns the newest 100: every acked id at least as new as the oldest returned is there.
          const oldest = Math.min(...found);
          for (const id of ids) if (id >= oldest) assert.ok(found.has(id), `group ${owner} lost ${id}`);
        } else {
          for (const id of ids) assert.ok(found.has(id), `user ${owner} lost acknowledged message ${id}`);
        }
        repairedAnswers.push(JSON.stringify(res.messages.map((m) => m.msgId)));
      }
      await store.close({ saveIndex: false });
      // Oracle: an index rebuilt from the blocks gives the same answers as the repaired one.
      const copy = tempDir();
      try {
        for (const f of fs.readdirSync(root).filter((f) => /^message_\d+$/.test(f)))
          fs.copyFileSync(path.join(root, f), path.join(copy, f));
        const rebuilt = MessageStore.open({ root: copy, blockSize: 256 * 1024 });
        assert.equal(rebuilt.openReport!.index, 'rebuilt');
        const rebuiltAnswers = [...owners.keys()].map((owner) => {
          const n = BigInt(owner.slice(1));
          const res =
            owner[0] === 'g' ? rebuilt.syncGroupMessage(APP, n, 0, 0) : rebuilt.syncMessage(APP, n, 0);
          return JSON.stringify(res.messages.map((m) => m.msgId));
        });
        assert.deepEqual(rebuiltAnswers, repairedAnswers);
        await rebuilt.close();
      } finally {
        removeDir(copy);
      }
    });
  }
});
