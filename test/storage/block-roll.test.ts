import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { BLOCK_HEADER_SIZE } from '../../src/format/constants.js';
import { decodeRecord } from '../../src/format/record.js';
import { MessageStore } from '../../src/storage/index.js';
import { removeDir, tempDir } from '../support/fixtures.js';
import { answers, runWorkload } from '../support/workload.js';

const BLOCK = 64 * 1024;

/** Every record of a block file, in order, with its offset. */
function records(file: string): { offset: number; size: number }[] {
  const buf = fs.readFileSync(file);
  const out: { offset: number; size: number }[] = [];
  let off = BLOCK_HEADER_SIZE;
  while (off < buf.length) {
    const d = decodeRecord(buf, off);
    assert.equal(d.kind, 'ok', `${file} offset ${off}`);
    if (d.kind !== 'ok') break;
    out.push({ offset: off, size: d.size });
    off += d.size;
  }
  return out;
}

describe('block roll (test-sized blocks)', () => {
  const dir = tempDir();
  after(() => removeDir(dir));
  let before = '';
  let since: number[] = [];

  it('rolls to new blocks, never straddling one, with ids = block * size + offset', async () => {
    const store = MessageStore.open({ root: dir, blockSize: BLOCK });
    const ids = runWorkload(store, 1500, 7);
    since = [0, ids[400], ids[1200]];
    before = answers(store, since);
    const blocks = fs.readdirSync(dir).filter((f) => /^message_\d+$/.test(f));
    assert.ok(blocks.length >= 4, `only ${blocks.length} blocks`);
    for (const b of blocks) {
      const size = fs.statSync(path.join(dir, b)).size;
      assert.ok(size <= BLOCK, `${b} is ${size} bytes`);
      records(path.join(dir, b)); // every block holds whole records only
    }
    for (const id of ids.slice(0, 50)) assert.ok(id % BLOCK >= BLOCK_HEADER_SIZE);
    await store.close();
  });

  it('answers the same after a restart with index files', async () => {
    const store = MessageStore.open({ root: dir, blockSize: BLOCK });
    assert.equal(store.openReport!.index, 'loaded');
    assert.equal(answers(store, since), before);
    await store.close();
  });

  it('answers the same after a rebuild from all blocks (no index files)', async () => {
    for (const f of ['peer_index', 'group_index', 'index_state']) fs.rmSync(path.join(dir, f));
    const store = MessageStore.open({ root: dir, blockSize: BLOCK });
    assert.equal(store.openReport!.index, 'rebuilt');
    assert.equal(answers(store, since), before);
    await store.close();
  });

  it('answers the same with an index older than the log (repair across blocks)', async () => {
    const store = MessageStore.open({ root: dir, blockSize: BLOCK });
    await store.saveIndex();
    const saved = Object.fromEntries(
      ['peer_index', 'group_index', 'index_state'].map((f) => [f, fs.readFileSync(path.join(dir, f))]),
    );
    const ids = runWorkload(store, 800, 8);
    since.push(ids[100]);
    before = answers(store, since);
    await store.close();
    for (const [f, data] of Object.entries(saved)) fs.writeFileSync(path.join(dir, f), data);
    const reopened = MessageStore.open({ root: dir, blockSize: BLOCK });
    assert.equal(reopened.openReport!.index, 'repaired');
    assert.ok(reopened.openReport!.recordsScanned > 800);
    assert.equal(answers(reopened, since), before);
    await reopened.close();
  });

  it('refuses to open a folder with a different block size than it was written with', () => {
    assert.throws(
      () => MessageStore.open({ root: dir, blockSize: BLOCK * 2 }),
      /written with 65536-byte blocks/,
    );
  });
});
