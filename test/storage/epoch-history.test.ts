import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { EPOCH_FILE, decodeEpochHistory, encodeEpochHistory } from '../../src/format/epoch-file.js';
import { EpochHistory } from '../../src/storage/epoch-history.js';
import { MessageStore, StorageInputError, StorageOpenError } from '../../src/storage/index.js';
import { removeDir, tempDir } from '../support/fixtures.js';

describe('EpochHistory', () => {
  const dirs: string[] = [];
  after(() => dirs.forEach(removeDir));
  const fresh = (): string => {
    const d = tempDir();
    dirs.push(d);
    return d;
  };

  it('a missing file is an empty history (latest epoch 0) and nothing is written by loading', () => {
    const dir = fresh();
    const e = EpochHistory.load(dir);
    assert.deepEqual(e.entries, []);
    assert.equal(e.latestEpoch, 0);
    assert.equal(fs.existsSync(path.join(dir, EPOCH_FILE)), false);
  });

  it('begin appends durably: the file decodes to the entries, no temp file is left, a reload agrees', () => {
    const dir = fresh();
    const e = EpochHistory.load(dir);
    e.begin(1, 32);
    e.begin(2, 4000);
    e.begin(5, 4000);
    const expected = [
      { epoch: 1, startId: 32 },
      { epoch: 2, startId: 4000 },
      { epoch: 5, startId: 4000 },
    ];
    assert.deepEqual(e.entries, expected);
    assert.equal(e.latestEpoch, 5);
    assert.deepEqual(decodeEpochHistory(fs.readFileSync(path.join(dir, EPOCH_FILE))), {
      ok: true,
      value: expected,
    });
    assert.deepEqual(fs.readdirSync(dir).sort(), [EPOCH_FILE]);
    assert.deepEqual(EpochHistory.load(dir).entries, expected);
    assert.ok(Object.isFrozen(e.entries) && Object.isFrozen(e.entries[0]));
  });

  it('begin refuses an epoch not above the latest or a start before the previous one, changing nothing', () => {
    const dir = fresh();
    const e = EpochHistory.load(dir);
    e.begin(3, 100);
    const before = fs.readFileSync(path.join(dir, EPOCH_FILE));
    assert.throws(
      () => e.begin(3, 200),
      (err: Error) => err instanceof StorageInputError && /larger than the latest epoch 3/.test(err.message),
    );
    assert.throws(() => e.begin(2, 200), /larger than the latest epoch 3/);
    assert.throws(() => e.begin(4, 99), /epoch 4 cannot start at 99: epoch 3 starts at 100/);
    assert.throws(() => e.begin(4.5, 200), /integer/);
    assert.throws(() => EpochHistory.load(fresh()).begin(1, -1), /ids are ≥ 0/);
    assert.deepEqual(e.entries, [{ epoch: 3, startId: 100 }]);
    assert.deepEqual(fs.readFileSync(path.join(dir, EPOCH_FILE)), before);
  });

  it('replace stores a whole (valid) history atomically, and refuses an invalid one', () => {
    const dir = fresh();
    const e = EpochHistory.load(dir);
    e.begin(1, 32);
    e.replace([
      { epoch: 1, startId: 32 },
      { epoch: 3, startId: 900 },
    ]);
    assert.equal(e.latestEpoch, 3);
    assert.throws(
      () =>
        e.replace([
          { epoch: 3, startId: 32 },
          { epoch: 2, startId: 900 },
        ]),
      /invalid epoch history: entry 1: epochs not strictly increasing/,
    );
    assert.deepEqual(EpochHistory.load(dir).entries, [
      { epoch: 1, startId: 32 },
      { epoch: 3, startId: 900 },
    ]);
    e.replace([]);
    assert.deepEqual(EpochHistory.load(dir).entries, []);
    assert.equal(fs.statSync(path.join(dir, EPOCH_FILE)).size, 20);
  });

  it('a leftover temp file from a crash is ignored and replaced', () => {
    const dir = fresh();
    fs.writeFileSync(path.join(dir, `${EPOCH_FILE}_t`), 'half-written');
    const e = EpochHistory.load(dir);
    assert.deepEqual(e.entries, []);
    e.begin(1, 32);
    assert.deepEqual(fs.readdirSync(dir).sort(), [EPOCH_FILE]);
  });

  it('a damaged file is a StorageOpenError naming the file and the problem', () => {
    const dir = fresh();
    const file = path.join(dir, EPOCH_FILE);
    const good = encodeEpochHistory([{ epoch: 1, startId: 32 }]);
    const cases: [Buffer, RegExp][] = [
      [Buffer.from('garbage!garbage!garbage!'), /bad magic/],
      [good.subarray(0, 30), /truncated/],
      [Buffer.concat([good.subarray(0, 20), Buffer.from([9]), good.subarray(21)]), /crc mismatch/],
    ];
    for (const [data, why] of cases) {
      fs.writeFileSync(file, data);
      assert.throws(
        () => EpochHistory.load(dir),
        (err: Error) =>
          err instanceof StorageOpenError && err.message.startsWith(`${file}: `) && why.test(err.message),
      );
    }
  });
});

describe('MessageStore.epochs', () => {
  const dirs: string[] = [];
  after(() => dirs.forEach(removeDir));

  it('is loaded at open, begins nothing by itself, and persists what the caller begins', async () => {
    const dir = tempDir();
    dirs.push(dir);
    const store = MessageStore.open({ root: dir });
    assert.equal(store.epochs.latestEpoch, 0);
    store.epochs.begin(1, store.nextId);
    await store.close();
    const again = MessageStore.open({ root: dir });
    assert.deepEqual(again.epochs.entries, [{ epoch: 1, startId: 32 }]);
    await again.close();
  });

  it('a damaged epoch_history stops the open with its name, and releases the lock', async () => {
    const dir = tempDir();
    dirs.push(dir);
    fs.writeFileSync(path.join(dir, EPOCH_FILE), 'IMSEPOCH');
    assert.throws(
      () => MessageStore.open({ root: dir }),
      (err: Error) =>
        err instanceof StorageOpenError && err.message.includes(EPOCH_FILE) && /truncated/.test(err.message),
    );
    fs.rmSync(path.join(dir, EPOCH_FILE));
    const store = MessageStore.open({ root: dir }); // the lock was released
    await store.close();
  });
});
