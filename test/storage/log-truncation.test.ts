import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { BLOCK_HEADER_SIZE, Cmd } from '../../src/format/constants.js';
import { MessageStore, StorageInputError } from '../../src/storage/index.js';
import type { StorageLogger } from '../../src/storage/storage-logger.js';
import { removeDir, tempDir } from '../support/fixtures.js';
import { APP, GROUPS, USERS, answers, imBody, runWorkload } from '../support/workload.js';

const BLOCK = 64 * 1024;
const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), '../support/truncate-child.js');
const BLOCK_NAME = /^message_\d+$/;

const dirs: string[] = [];
function scratch(): string {
  const d = tempDir();
  dirs.push(d);
  return d;
}

function copyFolder(src: string): string {
  const dst = scratch();
  fs.cpSync(src, dst, { recursive: true });
  return dst;
}

function open(root: string, logger?: StorageLogger): MessageStore {
  return MessageStore.open({ root, blockSize: BLOCK, logger });
}

/** Every record id of the log, in order. */
function boundaries(store: MessageStore): number[] {
  const ids: number[] = [];
  let id = BLOCK_HEADER_SIZE;
  for (;;) {
    const { records, next } = store.readLog(id, store.nextId, 10_000, 1 << 30);
    if (records.length === 0) return ids;
    for (const r of records) ids.push(r.id);
    id = next;
  }
}

/** Everything the index answers: every query of the workload's users and groups, counts, heads. */
function indexState(store: MessageStore, since: number[]): string {
  const heads = USERS.map((u) => store.peerHead(APP, u));
  const groupHeads = GROUPS.map((g) => store.groupHead(APP, g));
  return JSON.stringify({
    answers: answers(store, since),
    users: store.peerCount,
    groups: store.groupCount,
    heads,
    groupHeads,
  });
}

/** A folder into which only the records below `to` of `source` were written (the replication path). */
function oracle(source: MessageStore, to: number): MessageStore {
  const store = open(scratch());
  let id = BLOCK_HEADER_SIZE;
  while (id < to) {
    const { records, next } = source.readLog(id, to, 10_000, 1 << 30);
    if (records.length === 0) break;
    for (const r of records) store.applyReplicated(r.id, r.msg);
    id = next;
  }
  return store;
}

/** Names and sha256 of every file in a folder. */
function folderDigest(root: string): Record<string, string> {
  // Recursive: the checksum sidecars live in checksums/.
  return Object.fromEntries(
    (fs.readdirSync(root, { recursive: true }) as string[])
      .filter((f) => fs.statSync(path.join(root, f)).isFile())
      .sort()
      .map((f) => [
        f,
        crypto
          .createHash('sha256')
          .update(fs.readFileSync(path.join(root, f)))
          .digest('hex'),
      ]),
  );
}

function blockFiles(root: string): Map<number, Buffer> {
  return new Map(
    fs
      .readdirSync(root)
      .filter((f) => BLOCK_NAME.test(f))
      .map((f) => [Number(f.slice(8)), fs.readFileSync(path.join(root, f))]),
  );
}

function collectingLogger(): StorageLogger & { lines: string[] } {
  const lines: string[] = [];
  return {
    lines,
    log: (m) => void lines.push(m),
    warn: (m) => void lines.push(m),
    error: (m) => void lines.push(m),
  };
}

/** Checks that every original byte from `to` on is in a remaining block or in a kept-aside copy. */
function assertNothingLost(root: string, original: Map<number, Buffer>, to: number): void {
  const cutBlock = Math.floor((to - 1) / BLOCK);
  const remaining = blockFiles(root);
  for (const [b, bytes] of original) {
    if (b < cutBlock) {
      assert.deepEqual(remaining.get(b), bytes, `message_${b} is untouched`);
      continue;
    }
    const now = remaining.get(b);
    if (now) assert.deepEqual(now, bytes.subarray(0, now.length), `message_${b} is a prefix of the original`);
    const keptFrom = now?.length ?? 0;
    if (keptFrom >= bytes.length) continue;
    // The rest must be in a copy: a whole block, or the tail from where it was cut.
    const copies = fs
      .readdirSync(root)
      .filter((f) => f.startsWith(`message_${b}.diverged`))
      .map((f) => ({ f, data: fs.readFileSync(path.join(root, f)) }));
    const whole = copies.some((c) => c.data.equals(bytes));
    const tail = copies.some((c) => {
      const m = /\.diverged-(\d+)/.exec(c.f);
      return m !== null && Number(m[1]) <= keptFrom && c.data.equals(bytes.subarray(Number(m[1])));
    });
    assert.ok(
      whole || tail,
      `message_${b} from offset ${keptFrom} is kept aside (${copies.map((c) => c.f).join()})`,
    );
  }
}

after(() => dirs.forEach(removeDir));

describe('MessageStore.truncateLog', () => {
  /** A log over several 64 KiB blocks, closed cleanly (index files reflect its end). */
  let closedAtEnd = '';
  /** The same kind of log, with index files saved in the middle of it and not at close. */
  let savedMidway = '';
  let savedAt = 0;

  before(async () => {
    closedAtEnd = scratch();
    const a = open(closedAtEnd);
    runWorkload(a, 1200, 21);
    assert.ok(a.files.writeBlock >= 3, `only ${a.files.writeBlock + 1} blocks`);
    await a.close();
    savedMidway = scratch();
    const b = open(savedMidway);
    runWorkload(b, 700, 22);
    await b.saveIndex();
    savedAt = b.nextId;
    runWorkload(b, 700, 23);
    await b.close({ saveIndex: false });
  });

  it('cuts mid-save in an older block: index equals the oracle, bytes kept aside exactly, saves go on at the cut, reopen agrees', async () => {
    const dir = copyFolder(closedAtEnd);
    const logger = collectingLogger();
    const store = open(dir, logger);
    const ids = boundaries(store);
    // A queue entry in the middle of block 1: the cut separates a message from its entry.
    const to = ids.find((id) => id > BLOCK + BLOCK / 2 && store.readRecord(id).cmd === Cmd.OFFLINE_V2)!;
    assert.ok(to !== undefined && store.readRecord(ids[ids.indexOf(to) - 1]).cmd !== Cmd.OFFLINE_V2);
    const since = [0, ids[50], ids[ids.indexOf(to) - 7]];
    const want = oracle(store, to);
    const original = blockFiles(dir);
    const lastBlock = store.files.writeBlock;
    const oldEnd = store.nextId;

    const r = store.truncateLog(to);

    assert.equal(store.nextId, to);
    assert.equal(store.files.writeBlock, 1);
    assert.equal(store.files.durableId, to);
    assert.equal(r.index, 'rebuilt');
    assert.equal(r.indexFiles, 'removed');
    for (const f of ['peer_index', 'group_index', 'index_state'])
      assert.equal(fs.existsSync(path.join(dir, f)), false);
    const offset = to - BLOCK;
    const expectedAside = [];
    for (let m = lastBlock; m > 1; m--) expectedAside.push(`message_${m}.diverged`);
    expectedAside.push(`message_1.diverged-${offset}`);
    assert.deepEqual(
      r.keptAside.map((f) => path.basename(f)),
      expectedAside,
    );
    // The kept-aside bytes are exactly the cut bytes, and the cut bytes are the log from `to` on.
    let cutBytes = 0;
    for (let m = lastBlock; m > 1; m--) {
      assert.deepEqual(fs.readFileSync(path.join(dir, `message_${m}.diverged`)), original.get(m));
      cutBytes += original.get(m)!.length - BLOCK_HEADER_SIZE;
    }
    assert.deepEqual(
      fs.readFileSync(path.join(dir, `message_1.diverged-${offset}`)),
      original.get(1)!.subarray(offset),
    );
    cutBytes += original.get(1)!.length - offset;
    assert.equal(r.cutBytes, cutBytes);
    assert.ok(r.cutBytes > oldEnd - to - lastBlock * BLOCK);
    assert.deepEqual(fs.readFileSync(path.join(dir, 'message_1')), original.get(1)!.subarray(0, offset));
    assert.deepEqual(fs.readFileSync(path.join(dir, 'message_0')), original.get(0));
    assert.ok(
      logger.lines.some(
        (l) =>
          l.includes(`cut the log back from ${oldEnd} to ${to}`) &&
          l.includes(`message_1.diverged-${offset}`),
      ),
      logger.lines.join('\n'),
    );

    assert.equal(indexState(store, since), indexState(want, since));

    // New saves continue at the cut and answer as the oracle's.
    const s = store.savePeerMessage(APP, USERS[3], 1n, Cmd.IM, imBody(USERS[4], USERS[3], 'after the cut'));
    assert.equal(s.msgId, to);
    assert.deepEqual(
      want.savePeerMessage(APP, USERS[3], 1n, Cmd.IM, imBody(USERS[4], USERS[3], 'after the cut')),
      s,
    );
    assert.deepEqual(runWorkload(store, 400, 99), runWorkload(want, 400, 99));
    since.push(to);
    const after = indexState(store, since);
    assert.equal(after, indexState(want, since));
    await store.whenDurable();
    await store.close({ saveIndex: false }); // no index files: the reopen rebuilds
    const reopened = open(dir);
    assert.equal(reopened.openReport!.index, 'rebuilt');
    assert.equal(indexState(reopened, since), after);
    await reopened.close(); // saves the index: the next open loads it
    const again = open(dir);
    assert.equal(again.openReport!.index, 'loaded');
    assert.equal(indexState(again, since), after);
    await again.close();
    await want.close();
  });

  it('index files from before the cut are never trusted, even once the log regrows past its old end', async () => {
    const dir = copyFolder(closedAtEnd);
    const store = open(dir);
    const oldEnd = store.nextId;
    const to = boundaries(store).at(-40)!;
    const want = oracle(store, to);
    store.truncateLog(to);
    assert.deepEqual(runWorkload(store, 150, 8), runWorkload(want, 150, 8));
    assert.ok(store.nextId > oldEnd);
    await store.whenDurable();
    await store.close({ saveIndex: false }); // as a crash would: no index save since the cut
    const reopened = open(dir);
    assert.equal(reopened.openReport!.index, 'rebuilt');
    assert.equal(indexState(reopened, [0, to]), indexState(want, [0, to]));
    await reopened.close();
    await want.close();
  });

  it('keeps index files that reflect a point below the cut and repairs from them', async () => {
    const dir = copyFolder(savedMidway);
    const store = open(dir);
    assert.equal(store.openReport!.index, 'repaired');
    const ids = boundaries(store);
    const to = ids.find((id) => id > savedAt + 5000)!;
    const since = [0, ids[30], savedAt];
    const want = oracle(store, to);
    const indexFiles = ['peer_index', 'group_index', 'index_state'].map((f) =>
      fs.readFileSync(path.join(dir, f)),
    );

    const r = store.truncateLog(to);

    assert.equal(r.index, 'repaired');
    assert.equal(r.indexFiles, 'kept');
    assert.ok(r.recordsScanned > 0 && r.recordsScanned < ids.filter((id) => id < to).length);
    assert.deepEqual(
      ['peer_index', 'group_index', 'index_state'].map((f) => fs.readFileSync(path.join(dir, f))),
      indexFiles,
    );
    assert.equal(store.bytesSinceIndexSave, to - savedAt);
    assert.equal(indexState(store, since), indexState(want, since));
    assert.deepEqual(runWorkload(store, 200, 5), runWorkload(want, 200, 5));
    const after = indexState(store, since);
    await store.close({ saveIndex: false });
    const reopened = open(dir);
    assert.equal(reopened.openReport!.index, 'repaired');
    assert.equal(reopened.openReport!.scannedFrom, savedAt);
    assert.equal(indexState(reopened, since), after);
    assert.equal(after, indexState(want, since));
    await reopened.close();
    await want.close();
  });

  it('cuts at the end of an older block: later blocks are moved aside whole and the block is written on', async () => {
    const dir = copyFolder(closedAtEnd);
    const store = open(dir);
    const original = blockFiles(dir);
    const lastBlock = store.files.writeBlock;
    const to = BLOCK + original.get(1)!.length;
    const want = oracle(store, to);
    const r = store.truncateLog(to);
    assert.deepEqual(
      r.keptAside.map((f) => path.basename(f)),
      Array.from({ length: lastBlock - 1 }, (_, i) => `message_${lastBlock - i}.diverged`),
    );
    assert.equal(store.files.writeBlock, 1);
    assert.equal(store.nextId, to);
    assert.equal(indexState(store, [0]), indexState(want, [0]));
    const body = Buffer.from('x');
    assert.deepEqual(
      store.savePeerMessage(APP, 1n, 0n, Cmd.SYSTEM, body),
      want.savePeerMessage(APP, 1n, 0n, Cmd.SYSTEM, body),
    );
    await store.close();
    await want.close();
  });

  it('cuts at the first record of a block, leaving that block with its header only', async () => {
    const dir = copyFolder(closedAtEnd);
    const store = open(dir);
    const to = 2 * BLOCK + BLOCK_HEADER_SIZE;
    const want = oracle(store, to);
    const r = store.truncateLog(to);
    assert.equal(path.basename(r.keptAside.at(-1)!), `message_2.diverged-${BLOCK_HEADER_SIZE}`);
    assert.equal(fs.statSync(path.join(dir, 'message_2')).size, BLOCK_HEADER_SIZE);
    assert.equal(store.nextId, to);
    assert.equal(indexState(store, [0]), indexState(want, [0]));
    assert.equal(store.savePeerMessage(APP, 1n, 0n, Cmd.SYSTEM, Buffer.from('y')).msgId, to);
    await store.close();
    const reopened = open(dir);
    assert.equal(reopened.nextId, store.nextId);
    await reopened.close();
    await want.close();
  });

  it('cuts everything (back to the first record): an empty log and an empty index', async () => {
    const dir = copyFolder(closedAtEnd);
    const store = open(dir);
    const original = blockFiles(dir);
    const r = store.truncateLog(BLOCK_HEADER_SIZE);
    assert.equal(store.nextId, BLOCK_HEADER_SIZE);
    assert.equal(store.peerCount, 0);
    assert.equal(store.groupCount, 0);
    assert.equal(indexState(store, [0]), indexState(open(scratch()), [0]));
    assert.equal(
      r.cutBytes,
      [...original.values()].reduce((n, b) => n + b.length - BLOCK_HEADER_SIZE, 0),
    );
    assertNothingLost(dir, original, BLOCK_HEADER_SIZE);
    assert.equal(store.savePeerMessage(APP, 1n, 0n, Cmd.SYSTEM, Buffer.from('z')).msgId, BLOCK_HEADER_SIZE);
    await store.close();
  });

  it('at the log end it is a no-op', async () => {
    const dir = copyFolder(closedAtEnd);
    const store = open(dir);
    const digest = folderDigest(dir);
    const state = indexState(store, [0]);
    assert.deepEqual(store.truncateLog(store.nextId), {
      keptAside: [],
      cutBytes: 0,
      index: 'unchanged',
      recordsScanned: 0,
      indexFiles: 'kept',
    });
    assert.deepEqual(folderDigest(dir), digest);
    assert.equal(indexState(store, [0]), state);
    await store.close();
  });

  it('refuses a point that is not a record boundary in the log, naming it, and changes nothing', async () => {
    const dir = copyFolder(closedAtEnd);
    const store = open(dir);
    const ids = boundaries(store);
    const inBlock0 = ids.find((id) => id > 10_000)!;
    const inBlock2 = ids.find((id) => id > 2 * BLOCK + 20_000)!;
    const digest = folderDigest(dir);
    const state = indexState(store, [0, ids[100]]);
    const end = store.nextId;
    const cases: [number, RegExp][] = [
      [end + 1, /past the end of the log/],
      [end + BLOCK, /past the end of the log/],
      [-32, /not a message id/],
      [1.5, /not a message id/],
      [0, /message_0 offset 0 is inside the block header/],
      [BLOCK + 10, /message_1 offset 10 is inside the block header/],
      [
        inBlock0 + 1,
        new RegExp(
          `cannot cut the log at ${inBlock0 + 1} \\(message_0 offset ${inBlock0 + 1}\\): it is not a record boundary`,
        ),
      ],
      [inBlock2 + 4, /message_2 offset \d+\): it is not a record boundary/],
      [inBlock2 - 1, /not a record boundary/],
      [BLOCK + fs.statSync(path.join(dir, 'message_1')).size + 1, /past the end of the block/],
    ];
    for (const [to, why] of cases) {
      assert.throws(
        () => store.truncateLog(to),
        (err: Error) => err instanceof StorageInputError && why.test(err.message),
        `truncateLog(${to})`,
      );
      assert.deepEqual(folderDigest(dir), digest, `truncateLog(${to}) changed the folder`);
      assert.equal(store.nextId, end);
      assert.equal(indexState(store, [0, ids[100]]), state);
    }
    // Still fully usable.
    assert.equal(store.savePeerMessage(APP, 1n, 0n, Cmd.SYSTEM, Buffer.from('ok')).msgId, end);
    await store.close();
  });

  it('refuses while a write waits for its fsync, while the index is saved, and once closed', async () => {
    const dir = copyFolder(closedAtEnd);
    const store = open(dir);
    const to = boundaries(store).at(-10)!;
    store.savePeerMessage(APP, 1n, 0n, Cmd.SYSTEM, Buffer.from('pending'));
    const durable = store.whenDurable();
    assert.throws(
      () => store.truncateLog(to),
      /while a write or an fsync is in progress; await store.flush\(\) first/,
    );
    await durable;
    const saving = store.saveIndex();
    assert.throws(
      () => store.truncateLog(to),
      /while the index files are being saved; await store.saveIndex\(\) first/,
    );
    await saving;
    store.truncateLog(to);
    assert.equal(store.nextId, to);
    await store.close();
    assert.throws(() => store.truncateLog(to), /storage is closed/);
  });

  it('a second cut at the same place never overwrites the first copies', async () => {
    const dir = copyFolder(closedAtEnd);
    const store = open(dir);
    const ids = boundaries(store);
    const to = ids.find((id) => id > 2 * BLOCK + 1000)!;
    const first = store.truncateLog(to);
    runWorkload(store, 600, 77); // grows past block 3 again, with other records
    await store.flush();
    const second = store.truncateLog(to);
    const names = second.keptAside.map((f) => path.basename(f));
    assert.ok(names.includes(`message_2.diverged-${to - 2 * BLOCK}.2`), names.join());
    for (const f of first.keptAside) assert.ok(fs.existsSync(f));
    assert.notDeepEqual(fs.readFileSync(first.keptAside.at(-1)!), fs.readFileSync(second.keptAside.at(-1)!));
    await store.close();
  });
});

describe('truncateLog killed at every step (SIGKILL before each file-changing call)', () => {
  function runChild(
    root: string,
    to: number,
    killAt: number,
  ): Promise<{ signal: string | null; out: string }> {
    const child = spawn(process.execPath, [CHILD, root, String(BLOCK), String(to), String(killAt)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    return new Promise((resolve, reject) => {
      child.on('error', reject);
      child.on('exit', (_code, signal) => resolve({ signal, out }));
    });
  }

  for (const variant of ['index files past the cut', 'index files below the cut'] as const) {
    it(`${variant}: every crash state opens as a whole log between the cut and the old end, nothing is lost, and the cut then completes`, async () => {
      const template = scratch();
      const w = open(template);
      runWorkload(w, 500, 31);
      if (variant === 'index files below the cut') await w.saveIndex();
      const ids = boundaries(w);
      const to = ids.find((id) => id > BLOCK + 9000)!; // in block 1, two more blocks after it
      runWorkload(w, 900, 32);
      assert.ok(w.files.writeBlock >= 3);
      const oldEnd = w.nextId;
      await w.close({ saveIndex: variant === 'index files past the cut' });
      const original = blockFiles(template);
      const reference = open(copyFolder(template));
      const want = oracle(reference, to);
      const wantState = indexState(want, [0]);
      await reference.close();
      await want.close();

      const full = await runChild(copyFolder(template), to, 0);
      const total = Number(/^done (\d+)/.exec(full.out)?.[1]);
      assert.ok(total > 10, `the cut made ${total} file-changing calls`);
      const ends = new Set<number>();
      for (let k = 1; k <= total; k++) {
        const dir = copyFolder(template);
        const { signal } = await runChild(dir, to, k);
        assert.equal(signal, 'SIGKILL', `step ${k} of ${total}`);
        const store = open(dir);
        const end = store.nextId;
        ends.add(end);
        assert.ok(end >= to && end <= oldEnd, `step ${k}: log end ${end}`);
        assertNothingLost(dir, original, to);
        // The index the reopened folder has equals one rebuilt from its blocks alone.
        const rebuiltDir = scratch();
        for (const f of fs.readdirSync(dir).filter((f) => BLOCK_NAME.test(f)))
          fs.copyFileSync(path.join(dir, f), path.join(rebuiltDir, f));
        const rebuilt = open(rebuiltDir);
        assert.equal(rebuilt.openReport!.index, 'rebuilt');
        assert.equal(
          indexState(store, [0]),
          indexState(rebuilt, [0]),
          `step ${k}: repaired index equals a rebuild`,
        );
        await rebuilt.close();
        // Finishing the cut gives the oracle's index.
        store.truncateLog(to);
        assert.equal(indexState(store, [0]), wantState, `step ${k}: the finished cut equals the oracle`);
        await store.close();
        assertNothingLost(dir, original, to);
        removeDir(dir);
        removeDir(rebuiltDir);
      }
      assert.ok(ends.size >= 3, `crash states cover several log ends (${[...ends].join()})`);
    });
  }
});
