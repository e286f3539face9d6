import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { crc32 } from 'node:zlib';
import { after, describe, it } from 'node:test';
import { runRepair } from '../../src/cli/repair.js';
import { verifyFolder } from '../../src/cli/verify.js';
import { BLOCK_HEADER_SIZE, BLOCK_SIZE, Cmd } from '../../src/format/constants.js';
import {
  CHECKSUM_DIR,
  CHECKSUM_ENTRY_SIZE,
  CHECKSUM_HEADER_SIZE,
  decodeChecksumHeader,
} from '../../src/format/checksum-file.js';
import { decodeRecord } from '../../src/format/record.js';
import { MessageStore } from '../../src/storage/index.js';
import { BlockChecksums, ChecksumSidecars } from '../../src/storage/record-checksums.js';
import { copyFixtureDir, removeDir, tempDir } from '../support/fixtures.js';
import { MAIN_JS } from '../support/server-process.js';
import { APP, imBody, runWorkload } from '../support/workload.js';

const BLOCK = 64 * 1024;
const WRITER = path.join(path.dirname(fileURLToPath(import.meta.url)), '../support/store-writer.js');
const dirs: string[] = [];
after(() => dirs.forEach(removeDir));
function dir(): string {
  const d = tempDir('ims-crc-');
  dirs.push(d);
  return d;
}

function blockNames(root: string): string[] {
  return fs
    .readdirSync(root)
    .filter((f) => /^message_\d+$/.test(f))
    .sort((a, b) => Number(a.slice(8)) - Number(b.slice(8)));
}

/** Record offsets and CRC32s of a block file, computed independently of the engine. */
function recordSums(file: string): Map<number, number> {
  const buf = fs.readFileSync(file);
  const out = new Map<number, number>();
  for (let off = BLOCK_HEADER_SIZE; off < buf.length;) {
    const d = decodeRecord(buf, off);
    assert.equal(d.kind, 'ok', `${file} offset ${off}`);
    if (d.kind !== 'ok') break;
    out.set(off, crc32(buf.subarray(off, off + d.size)));
    off += d.size;
  }
  return out;
}

function sidecarEntries(root: string, block: string): { sealedAt: number; entries: Map<number, number> } {
  const data = fs.readFileSync(path.join(root, CHECKSUM_DIR, `${block}.crc`));
  const h = decodeChecksumHeader(data, Number(block.slice(8)));
  assert.ok(h.ok, `${block}.crc header`);
  const entries = new Map<number, number>();
  for (let off = CHECKSUM_HEADER_SIZE; off + CHECKSUM_ENTRY_SIZE <= data.length; off += CHECKSUM_ENTRY_SIZE)
    entries.set(data.readUInt32BE(off), data.readUInt32BE(off + 4));
  return { sealedAt: h.ok ? h.value.sealedAt : -1, entries };
}

function flipByte(file: string, offset: number): void {
  const fd = fs.openSync(file, 'r+');
  const b = Buffer.alloc(1);
  fs.readSync(fd, b, 0, 1, offset);
  b[0] ^= 0x20;
  fs.writeSync(fd, b, 0, 1, offset);
  fs.closeSync(fd);
}

const verifyOpts = { blockSize: BLOCK, blockSizeSource: 'test' };

describe('record checksums', () => {
  it('keeps a CRC32 of every record in checksums/message_N.crc; sealed blocks carry their sealing time', async () => {
    const root = dir();
    const started = Date.now();
    const store = MessageStore.open({ root, blockSize: BLOCK });
    runWorkload(store, 1200, 3);
    await store.close();
    const blocks = blockNames(root);
    assert.ok(blocks.length >= 3, `${blocks.length} blocks`);
    // Nothing but Go's block names in the folder itself: Go globs message_* and refuses other names.
    assert.deepEqual(
      fs.readdirSync(root).filter((f) => f.startsWith('message_') && !/^message_\d+$/.test(f)),
      [],
    );
    for (const b of blocks) {
      const want = recordSums(path.join(root, b));
      const got = sidecarEntries(root, b);
      assert.deepEqual(got.entries, want, `${b}: sidecar equals the records' CRC32s`);
      if (b === blocks[blocks.length - 1]) assert.equal(got.sealedAt, 0);
      else assert.ok(got.sealedAt >= started && got.sealedAt <= Date.now(), `${b} sealed at ${got.sealedAt}`);
    }
    const report = verifyFolder(root, verifyOpts);
    assert.equal(report.clean, true, JSON.stringify(report.problems));
    assert.equal(report.checksums.unchecked, 0);
    assert.ok(report.checksums.checked > 2000);
  });

  it('a flipped body byte: verify names file, offset and message id (exit 1); a read refuses it', async () => {
    const root = dir();
    const store = MessageStore.open({ root, blockSize: BLOCK });
    const body = imBody(1n, 2n, 'the victim message');
    runWorkload(store, 100, 4);
    const victim = store.savePeerMessage(APP, 2n, 1n, Cmd.IM, body).msgId;
    runWorkload(store, 800, 5);
    await store.close();
    const file = path.join(root, `message_${Math.floor(victim / BLOCK)}`);
    const offset = victim % BLOCK;
    flipByte(file, offset + 16 + 40);

    const report = verifyFolder(root, verifyOpts);
    const p = report.problems.find((x) => x.kind === 'checksum-mismatch');
    assert.ok(p, JSON.stringify(report.problems));
    assert.equal(p.file, path.basename(file));
    assert.equal(p.offset, offset);
    assert.match(p.message, new RegExp(`message id ${victim}\\b`));
    const cli = spawnSync(process.execPath, [MAIN_JS, 'verify', root, '--block-size', String(BLOCK)], {
      encoding: 'utf8',
    });
    assert.equal(cli.status, 1, cli.stdout + cli.stderr);
    assert.match(
      cli.stdout,
      new RegExp(`${path.basename(file)} offset ${offset}: checksum mismatch in message id ${victim}`),
    );

    // Framing is intact, so only the checksum can tell: the read answers an error naming the record.
    const reopened = MessageStore.open({ root, blockSize: BLOCK });
    try {
      assert.throws(
        () => reopened.syncMessage(APP, 2n, 0),
        (err: Error) =>
          err.name === 'CorruptRecordError' &&
          err.message.includes(`${path.basename(file)} offset ${offset}`) &&
          err.message.includes(`message id ${victim}`),
      );
      assert.throws(() => reopened.readRecord(victim), /checksum mismatch/);
    } finally {
      await reopened.close();
    }
  });

  it('start-up cuts a bad last record of the write block (a torn tail) but refuses bad bytes followed by whole records', async () => {
    const root = dir();
    let store = MessageStore.open({ root, blockSize: BLOCK });
    const ids: number[] = [];
    for (let i = 0; i < 30; i++)
      ids.push(store.savePeerMessage(APP, 5n, 1n, Cmd.IM, imBody(1n, 5n, `m${i}`)).msgId);
    await store.close();
    const file = path.join(root, 'message_0');
    const size = fs.statSync(file).size;
    // Damage in the middle: a message record with 59 whole records after it. Without index files
    // start-up replays the whole write block, so it meets the damage.
    for (const f of ['peer_index', 'group_index', 'index_state']) fs.rmSync(path.join(root, f));
    flipByte(file, (ids[10] % BLOCK) + 16 + 30);
    assert.throws(
      () => MessageStore.open({ root, blockSize: BLOCK }),
      (err: Error) =>
        err.name === 'StorageOpenError' &&
        err.message.includes(`message_0 offset ${ids[10]}`) &&
        /whole records follow/.test(err.message),
    );
    assert.equal(fs.statSync(file).size, size, 'nothing was cut');
    assert.deepEqual(
      fs.readdirSync(root).filter((f) => f.includes('.torn')),
      [],
    );
    flipByte(file, (ids[10] % BLOCK) + 16 + 30); // undo

    // The last record (a queue entry) with a bad byte and nothing after it: what a crash leaves.
    flipByte(file, size - 10);
    store = MessageStore.open({ root, blockSize: BLOCK });
    try {
      assert.ok(store.openReport!.tornTail, 'a torn tail was cut');
      assert.match(store.openReport!.tornTail.reason, /checksum mismatch/);
      assert.ok(store.nextId < size);
    } finally {
      await store.close();
    }
    assert.equal(verifyFolder(root, verifyOpts).clean, true);
  });

  it('a Go folder: verify says its blocks have no checksums; repair --checksums creates them after a clean verify', async () => {
    const root = copyFixtureDir('clean');
    dirs.push(root);
    const opts = { blockSize: BLOCK_SIZE, blockSizeSource: 'test' };
    const before = verifyFolder(root, opts);
    assert.equal(before.clean, true);
    assert.deepEqual(before.checksums.blocksWithout, ['message_0']);
    assert.match(before.checksums.message, /no checksum sidecar.*message_0.*repair --checksums/);
    const lines: string[] = [];
    const code = await runRepair(root, {
      ...opts,
      dryRun: false,
      json: false,
      checksums: true,
      print: (l) => lines.push(l),
    });
    assert.equal(code, 0, lines.join('\n'));
    const after = verifyFolder(root, opts);
    assert.equal(after.clean, true);
    assert.deepEqual(after.checksums.blocksWithout, []);
    assert.equal(after.checksums.checked, after.records);
    assert.equal(after.checksums.unchecked, 0);
    assert.deepEqual(sidecarEntries(root, 'message_0').entries, recordSums(path.join(root, 'message_0')));
  });

  it('SIGKILL in the middle of writes: every acknowledged record has a matching checksum', async () => {
    const root = dir();
    const child = spawn(process.execPath, [WRITER, root, '9'], { stdio: ['ignore', 'pipe', 'inherit'] });
    const acked: number[] = [];
    let buf = '';
    await new Promise<void>((resolve, reject) => {
      child.on('exit', () => resolve());
      child.on('error', reject);
      child.stdout.on('data', (chunk: Buffer) => {
        buf += chunk.toString();
        const lines = buf.split('\n');
        buf = lines.pop()!;
        for (const l of lines) {
          const m = /^ack (\d+) /.exec(l);
          if (m) acked.push(Number(m[1]));
        }
        if (acked.length >= 3000 && child.exitCode === null) child.kill('SIGKILL');
      });
    });
    const writerBlock = 256 * 1024;
    const report = verifyFolder(root, { blockSize: writerBlock, blockSizeSource: 'test' });
    assert.deepEqual(
      report.problems.filter((p) => !p.repairable),
      [],
      'no damage, no checksum mismatch',
    );
    const store = MessageStore.open({ root, blockSize: writerBlock });
    try {
      // readRecord checks each record against its checksum.
      for (const id of acked) assert.ok([Cmd.IM, Cmd.GROUP_IM].includes(store.readRecord(id).cmd as 4 | 8));
    } finally {
      await store.close();
    }
    const after = verifyFolder(root, { blockSize: writerBlock, blockSizeSource: 'test' });
    assert.equal(after.clean, true, JSON.stringify(after.problems));
    assert.equal(after.checksums.unchecked, 0);
  });
});

describe('checked reads: the recheck window', () => {
  const epochMs = ChecksumSidecars.recheckEpochMs;
  after(() => {
    ChecksumSidecars.recheckEpochMs = epochMs;
  });

  async function folderWithVictim(): Promise<{ root: string; victim: number; file: string }> {
    const root = dir();
    const store = MessageStore.open({ root, blockSize: BLOCK });
    runWorkload(store, 50, 7);
    const victim = store.savePeerMessage(APP, 3n, 1n, Cmd.IM, imBody(1n, 3n, 'watched')).msgId;
    runWorkload(store, 50, 8);
    await store.close();
    return { root, victim, file: path.join(root, `message_${Math.floor(victim / BLOCK)}`) };
  }

  it('with the window off, a read after the bytes changed fails even though the record was read before', async () => {
    ChecksumSidecars.recheckEpochMs = 0;
    const { root, victim, file } = await folderWithVictim();
    const store = MessageStore.open({ root, blockSize: BLOCK });
    try {
      assert.equal(store.readRecord(victim).cmd, Cmd.IM);
      flipByte(file, (victim % BLOCK) + 16 + 30);
      assert.throws(() => store.readRecord(victim), /checksum mismatch/);
    } finally {
      await store.close();
    }
  });

  it('checksum_recheck_s reaches the store: 0 checks every read whatever the built-in default', async () => {
    ChecksumSidecars.recheckEpochMs = 60_000;
    const { root, victim, file } = await folderWithVictim();
    const store = MessageStore.open({ root, blockSize: BLOCK, checksumRecheckMs: 0 });
    try {
      assert.equal(store.readRecord(victim).cmd, Cmd.IM);
      flipByte(file, (victim % BLOCK) + 16 + 30);
      assert.throws(() => store.readRecord(victim), /checksum mismatch/);
    } finally {
      await store.close();
    }
  });

  it('a record verified within the window is trusted; once the window has passed it is checked again', async () => {
    ChecksumSidecars.recheckEpochMs = 100;
    const { root, victim, file } = await folderWithVictim();
    const store = MessageStore.open({ root, blockSize: BLOCK });
    try {
      const first = store.readRecord(victim);
      // Changed behind the server's back (another process writing into the block file): within the
      // window the earlier check stands, which is what the window trades for cheaper repeated reads.
      flipByte(file, (victim % BLOCK) + 16 + 30);
      assert.notDeepEqual(store.readRecord(victim).body, first.body);
      await new Promise((r) => setTimeout(r, 350));
      assert.throws(() => store.readRecord(victim), /checksum mismatch/);
    } finally {
      await store.close();
    }
  });

  it('marks never outlive their record: a slot reused after a cut, and the 8-bit epoch wrap, start unverified', () => {
    const sums = new BlockChecksums(0, 0, 2);
    sums.add(32, 1);
    sums.add(100, 2);
    sums.setMark(1, 7);
    sums.truncateFrom(100);
    sums.add(100, 3);
    assert.equal(sums.markAt(1), 0);
    ChecksumSidecars.recheckEpochMs = 1000;
    const sidecars = new ChecksumSidecars(dir(), { log() {}, warn() {}, error() {} });
    try {
      const s = new BlockChecksums(0, 0);
      s.add(32, 1);
      sidecars.markVerified(s, 0);
      assert.equal(sidecars.recentlyVerified(s, 0), true);
      const tick = (sidecars as unknown as { nextEpoch(): void }).nextEpoch.bind(sidecars);
      tick();
      assert.equal(sidecars.recentlyVerified(s, 0), true, 'the next epoch still counts');
      tick();
      assert.equal(sidecars.recentlyVerified(s, 0), false, 'two epochs later it does not');
      // 255 epochs later the 8-bit epoch is back at the mark's value: the wrap must have cleared it.
      (sidecars as unknown as { writeSums: BlockChecksums }).writeSums = s;
      sidecars.markVerified(s, 0);
      for (let i = 0; i < 255; i++) tick();
      assert.equal(sidecars.recentlyVerified(s, 0), false, 'marks are cleared when the epoch wraps');
    } finally {
      sidecars.stop();
    }
  });
});
