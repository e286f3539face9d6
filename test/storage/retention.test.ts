import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { verifyFolder } from '../../src/cli/verify.js';
import { BLOCK_HEADER_SIZE } from '../../src/format/constants.js';
import { CHECKSUM_DIR, encodeChecksumHeader } from '../../src/format/checksum-file.js';
import { expiredPrefix } from '../../src/storage/retention.js';
import { MessageStore } from '../../src/storage/index.js';
import { removeDir, tempDir } from '../support/fixtures.js';
import { APP, GROUPS, USERS, runWorkload } from '../support/workload.js';

const BLOCK = 64 * 1024;
const HOUR = 3_600_000;
const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), '../support/retention-child.js');
const dirs: string[] = [];
after(() => dirs.forEach(removeDir));
function dir(): string {
  const d = tempDir('ims-ret-');
  dirs.push(d);
  return d;
}

function blockNumbers(root: string): number[] {
  return fs
    .readdirSync(root)
    .filter((f) => /^message_\d+$/.test(f))
    .map((f) => Number(f.slice(8)))
    .sort((a, b) => a - b);
}

interface Answers {
  users: Map<bigint, { ids: number[]; raws: string[] }>;
  groups: Map<bigint, number[]>;
}

function snapshot(store: MessageStore): Answers {
  const users = new Map<bigint, { ids: number[]; raws: string[] }>();
  for (const u of USERS) {
    const r = store.syncMessage(APP, u, 0);
    assert.equal(r.hasMore, false);
    users.set(u, { ids: r.messages.map((m) => m.msgId), raws: r.messages.map((m) => m.raw.toString('hex')) });
  }
  const groups = new Map<bigint, number[]>();
  for (const g of GROUPS)
    groups.set(
      g,
      store.syncGroupMessage(APP, g, 0, 0).messages.map((m) => m.msgId),
    );
  return { users, groups };
}

/** What the queries must answer once ids below `firstId` are gone: the same, cut at the boundary. */
function expectAfter(all: Answers, firstId: number, store: MessageStore): void {
  for (const u of USERS) {
    const want = all.users.get(u)!;
    const keep = want.ids.filter((id) => id >= firstId).length;
    const r = store.syncMessage(APP, u, 0);
    assert.deepEqual(
      r.messages.map((m) => m.msgId),
      want.ids.slice(0, keep),
      `user ${u}`,
    );
    assert.deepEqual(
      r.messages.map((m) => m.raw.toString('hex')),
      want.raws.slice(0, keep),
    );
    assert.equal(r.hasMore, false, `user ${u}: nothing more exists`);
    // Latest and new-count walk the same chain and stop at the same place.
    const latest = store.getLatestMessages(APP, u, 1000).map((m) => m.msgId);
    assert.ok(latest.every((id) => id >= firstId));
    const retained = new Set(want.ids.slice(0, keep));
    assert.ok(
      latest.every((id) => retained.has(id)),
      `user ${u}: latest messages are retained ones`,
    );
    if (keep > 0) {
      assert.ok([0, 1].includes(store.getNewCount(APP, u, 0)));
      assert.equal(store.getNewCount(APP, u, want.ids[0]), 0);
    }
  }
  for (const g of GROUPS) {
    const want = all.groups.get(g)!;
    const got = store.syncGroupMessage(APP, g, 0, 0).messages.map((m) => m.msgId);
    // Group sync returns at most 100: compare against the retained part of the same window.
    assert.deepEqual(
      got,
      want.filter((id) => id >= firstId),
      `group ${g}`,
    );
  }
}

describe('retention', () => {
  it('picks a prefix of sealed blocks by age and by size', () => {
    const now = 100 * HOUR;
    const blocks = [0, 1, 2, 3].map((b) => ({ blockNo: b, size: 100, sealedAt: now - (10 - b) * HOUR }));
    assert.equal(expiredPrefix(blocks, { maxAgeMs: 8.5 * HOUR, maxBytes: 0 }, now), 2);
    assert.equal(expiredPrefix(blocks, { maxAgeMs: 0, maxBytes: 250 }, now), 2);
    assert.equal(expiredPrefix(blocks, { maxAgeMs: 0, maxBytes: 400 }, now), 0);
    assert.equal(expiredPrefix(blocks, { maxAgeMs: 0, maxBytes: 0 }, now), 0);
    // An old block behind a young one is not deleted out of order.
    const mixed = [
      { ...blocks[0], sealedAt: now },
      { ...blocks[1], sealedAt: 0 },
    ];
    assert.equal(expiredPrefix(mixed, { maxAgeMs: HOUR, maxBytes: 0 }, now), 0);
  });

  let all: Answers;
  let base: string;
  before(async () => {
    base = dir();
    const store = MessageStore.open({ root: base, blockSize: BLOCK });
    runWorkload(store, 2500, 21);
    all = snapshot(store);
    await store.close();
    assert.ok(blockNumbers(base).length >= 8, `${blockNumbers(base).length} blocks`);
  });

  function copy(): string {
    const d = dir();
    fs.cpSync(base, d, { recursive: true });
    return d;
  }

  it('by size: deletes the oldest sealed blocks; queries end at the boundary; restart (index and rebuild) agrees', async () => {
    const root = copy();
    const blocks = blockNumbers(root);
    let store = MessageStore.open({ root, blockSize: BLOCK });
    const r = store.applyRetention({ maxAgeMs: 0, maxBytes: 3 * BLOCK });
    const left = blockNumbers(root);
    assert.ok(r.deleted.length >= blocks.length - 5, `deleted ${r.deleted.join(',')}`);
    assert.equal(left[0], blocks.length - left.length);
    assert.ok(left.length - 1 <= 3, 'sealed blocks within 3 blocks of bytes');
    assert.equal(left[left.length - 1], blocks[blocks.length - 1], 'the write block is kept');
    assert.equal(r.firstId, left[0] * BLOCK + BLOCK_HEADER_SIZE);
    assert.equal(store.firstId, r.firstId);
    assert.equal(store.bytesReclaimed, r.bytesReclaimed);
    assert.ok(r.bytesReclaimed > (r.deleted.length - 1) * (BLOCK - 1000));
    assert.deepEqual(
      fs.readdirSync(path.join(root, CHECKSUM_DIR)).filter((f) => Number(/\d+/.exec(f)![0]) < left[0]),
      [],
      'sidecars go with their blocks',
    );
    expectAfter(all, r.firstId, store);
    await store.close();

    store = MessageStore.open({ root, blockSize: BLOCK });
    assert.notEqual(store.openReport!.index, 'rebuilt');
    expectAfter(all, r.firstId, store);
    await store.close();
    const v = verifyFolder(root, { blockSize: BLOCK, blockSizeSource: 'test' });
    assert.equal(v.clean, true, JSON.stringify(v.problems));
    assert.equal(v.firstId, r.firstId);
    assert.ok(v.chains.linksIntoDeletedBlocks > 0);

    for (const f of ['peer_index', 'group_index', 'index_state']) fs.rmSync(path.join(root, f));
    store = MessageStore.open({ root, blockSize: BLOCK });
    assert.equal(store.openReport!.index, 'rebuilt');
    expectAfter(all, r.firstId, store);
    // Writes go on after retention.
    store.savePeerMessage(APP, USERS[0], 1n, 4, Buffer.alloc(40, 1));
    await store.close();
    assert.equal(verifyFolder(root, { blockSize: BLOCK, blockSizeSource: 'test' }).clean, true);
  });

  it("by age: the sealing time in the sidecar header (or a Go block's mtime) decides, not sleeping", async () => {
    const root = copy();
    const now = Date.now();
    const setSealed = (b: number, at: number) => {
      const file = path.join(root, CHECKSUM_DIR, `message_${b}.crc`);
      const fd = fs.openSync(file, 'r+');
      fs.writeSync(fd, encodeChecksumHeader({ blockNo: b, sealedAt: at }), 0, 32, 0);
      fs.closeSync(fd);
    };
    setSealed(0, now - 50 * HOUR);
    setSealed(1, now - 49 * HOUR);
    // Block 2 as Go left it: no sidecar; its mtime is its age.
    fs.rmSync(path.join(root, CHECKSUM_DIR, 'message_2.crc'));
    fs.utimesSync(path.join(root, 'message_2'), new Date(now - 48 * HOUR), new Date(now - 48 * HOUR));
    setSealed(3, now - 1 * HOUR);
    setSealed(4, now - 60 * HOUR); // older, but behind a young block: kept (blocks go oldest first)
    const store = MessageStore.open({
      root,
      blockSize: BLOCK,
      retention: { maxAgeMs: 24 * HOUR, maxBytes: 0 },
    });
    try {
      assert.deepEqual(blockNumbers(root).slice(0, 2), [3, 4], 'deleted at open: message_0..2');
      assert.equal(store.firstId, 3 * BLOCK + BLOCK_HEADER_SIZE);
      expectAfter(all, store.firstId, store);
      assert.deepEqual(store.applyRetention().deleted, [], 'nothing more is due');
    } finally {
      await store.close();
    }
  });

  it('SIGKILL at every step of a retention pass: each crash state opens, answers cut at its boundary, verifies clean', async () => {
    // Two sealed blocks to delete: every step of deleting one block, then the next.
    const keepBytes = (blockNumbers(base).length - 3) * BLOCK;
    const probe = copy();
    const done = spawnSync(process.execPath, [CHILD, probe, String(BLOCK), String(keepBytes), '0'], {
      encoding: 'utf8',
    });
    const m = /done (\d+)/.exec(done.stdout);
    assert.ok(m, done.stdout + done.stderr);
    const steps = Number(m[1]);
    assert.ok(steps >= 6, `${steps} steps`);
    for (let k = 1; k <= steps; k++) {
      const root = copy();
      const run = spawnSync(process.execPath, [CHILD, root, String(BLOCK), String(keepBytes), String(k)], {
        encoding: 'utf8',
      });
      assert.equal(run.signal, 'SIGKILL', `step ${k}: ${run.stdout}${run.stderr}`);
      const store = MessageStore.open({ root, blockSize: BLOCK });
      try {
        expectAfter(all, store.firstId, store);
      } finally {
        await store.close();
      }
      const v = verifyFolder(root, { blockSize: BLOCK, blockSizeSource: 'test' });
      assert.equal(v.clean, true, `step ${k}: ${JSON.stringify(v.problems)}`);
      const orphans = fs
        .readdirSync(path.join(root, CHECKSUM_DIR))
        .filter((f) => Number(/\d+/.exec(f)![0]) < blockNumbers(root)[0]);
      assert.deepEqual(orphans, [], `step ${k}: orphan sidecars removed at open`);
    }
  });
});
