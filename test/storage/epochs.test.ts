import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { EpochEntry } from '../../src/format/epoch-file.js';
import {
  commonEpoch,
  divergence,
  divergencePoint,
  endOfEpoch,
  mergeFollowerHistory,
  startOfEpoch,
  trimHistory,
} from '../../src/storage/epochs.js';

const h = (...pairs: [number, number][]): EpochEntry[] =>
  pairs.map(([epoch, startId]) => ({ epoch, startId }));

describe('endOfEpoch / startOfEpoch', () => {
  const history = h([1, 32], [2, 4000], [3, 4000], [5, 9000]);

  it('ends at the next entry start, the last epoch at the log end, clamped to the log end', () => {
    assert.equal(endOfEpoch(history, 10_000, 1), 4000);
    assert.equal(endOfEpoch(history, 10_000, 2), 4000);
    assert.equal(endOfEpoch(history, 10_000, 3), 9000);
    assert.equal(endOfEpoch(history, 10_000, 5), 10_000);
    assert.equal(endOfEpoch(history, 5000, 3), 5000, 'the node has not copied as far as epoch 5');
    assert.equal(endOfEpoch(history, 5000, 5), 5000, 'an adopted epoch past the log end holds nothing');
    assert.equal(endOfEpoch(history, 3000, 1), 3000);
  });

  it('null for an epoch the history lacks; the implicit epoch 0 runs up to the first entry', () => {
    assert.equal(endOfEpoch(history, 10_000, 4), null);
    assert.equal(startOfEpoch(history, 4), null);
    assert.equal(endOfEpoch(history, 10_000, 0), 32);
    assert.equal(startOfEpoch(history, 0), 0);
    assert.equal(startOfEpoch(history, 5), 9000);
    assert.equal(endOfEpoch([], 777, 0), 777);
    assert.equal(endOfEpoch(h([1, 5000]), 4000, 0), 4000);
  });
});

describe('divergencePoint', () => {
  it('master restarted losing its tail: slave [(1,32)] at 5000, master [(1,32),(2,4000)] at 4100 → cut to 4000', () => {
    const slave = h([1, 32]);
    const master = h([1, 32], [2, 4000]);
    assert.equal(divergencePoint(slave, 5000, master, 4100), 4000);
    assert.deepEqual(divergence(slave, 5000, master, 4100), {
      commonEpoch: 1,
      agreedEnd: 4000,
      relation: 'diverged',
    });
    assert.deepEqual(mergeFollowerHistory(slave, master, 4000), master);
  });

  it('the same, before the master wrote anything in its new epoch: still diverged (it moved on at 4000)', () => {
    const d = divergence(h([1, 32]), 5000, h([1, 32], [2, 4000]), 4000);
    assert.deepEqual(d, { commonEpoch: 1, agreedEnd: 4000, relation: 'diverged' });
  });

  it('a slave that missed later epochs but holds no diverged records is just behind', () => {
    const d = divergence(h([1, 32]), 3500, h([1, 32], [2, 4000], [3, 6000]), 7000);
    assert.deepEqual(d, { commonEpoch: 1, agreedEnd: 3500, relation: 'behind' });
    assert.deepEqual(mergeFollowerHistory(h([1, 32]), h([1, 32], [2, 4000], [3, 6000]), 3500), [
      { epoch: 1, startId: 32 },
      { epoch: 2, startId: 4000 },
      { epoch: 3, startId: 6000 },
    ]);
  });

  it('a slave from an older epoch entirely, with records the master never had (a deposed master)', () => {
    // The slave was master of epoch 2 and wrote 3000..5000; the new master never saw epoch 2.
    const slave = h([1, 32], [2, 3000]);
    const master = h([1, 32], [3, 4000]);
    assert.deepEqual(divergence(slave, 5000, master, 8000), {
      commonEpoch: 1,
      agreedEnd: 3000,
      relation: 'diverged',
    });
    assert.deepEqual(mergeFollowerHistory(slave, master, 3000), h([1, 32], [3, 4000]));
  });

  it('the same epoch number with different starts (two masters claimed it) is not common', () => {
    const slave = h([1, 32], [2, 3000]);
    const master = h([1, 32], [2, 3500]);
    assert.equal(commonEpoch(slave, master), 1);
    assert.equal(divergencePoint(slave, 5000, master, 8000), 3000);
  });

  it('a slave ahead of its master within the same epoch: agreed at the master end, relation ahead', () => {
    // The master has not begun a newer epoch: the slave's extra records are the master's own (lost) tail.
    const d = divergence(h([1, 32]), 5000, h([1, 32]), 4100);
    assert.deepEqual(d, { commonEpoch: 1, agreedEnd: 4100, relation: 'ahead' });
  });

  it('a newer slave epoch after the common one makes it diverged, even at the master end', () => {
    const d = divergence(h([1, 32], [2, 4100]), 5000, h([1, 32]), 6000);
    assert.deepEqual(d, { commonEpoch: 1, agreedEnd: 4100, relation: 'diverged' });
  });

  it('identical histories: in sync at equal ends, otherwise the shorter log is behind', () => {
    const x = h([1, 32], [2, 4000]);
    assert.deepEqual(divergence(x, 6000, x, 6000), { commonEpoch: 2, agreedEnd: 6000, relation: 'in-sync' });
    assert.deepEqual(divergence(x, 5000, x, 6000), { commonEpoch: 2, agreedEnd: 5000, relation: 'behind' });
    assert.deepEqual(divergence(x, 6500, x, 6000), { commonEpoch: 2, agreedEnd: 6000, relation: 'ahead' });
    assert.deepEqual(mergeFollowerHistory(x, x, 5000), x);
  });

  it('empty histories: a brand-new slave agrees at its log end with anyone', () => {
    assert.deepEqual(divergence([], 32, h([1, 32], [2, 4000]), 9000), {
      commonEpoch: 0,
      agreedEnd: 32,
      relation: 'behind',
    });
    assert.deepEqual(divergence([], 32, [], 9000), { commonEpoch: 0, agreedEnd: 32, relation: 'behind' });
    assert.deepEqual(mergeFollowerHistory([], h([1, 32], [2, 4000]), 32), h([1, 32], [2, 4000]));
  });

  it('empty histories on both sides (pre-epoch folders): the shorter log is agreed', () => {
    assert.deepEqual(divergence([], 5000, [], 9000), { commonEpoch: 0, agreedEnd: 5000, relation: 'behind' });
    assert.deepEqual(divergence([], 9000, [], 5000), { commonEpoch: 0, agreedEnd: 5000, relation: 'ahead' });
  });

  it('a pre-epoch slave of a master upgraded to epochs keeps what precedes the first epoch, no more', () => {
    assert.deepEqual(divergence([], 4800, h([1, 5000]), 9000), {
      commonEpoch: 0,
      agreedEnd: 4800,
      relation: 'behind',
    });
    // The master lost 4800..5000 before the upgrade: the slave cuts what the master does not have.
    assert.deepEqual(divergence([], 5000, h([1, 4800]), 9000), {
      commonEpoch: 0,
      agreedEnd: 4800,
      relation: 'diverged',
    });
  });

  it('pre-epoch records facing a master whose first epoch starts at the log start are never agreed', () => {
    // A slave with old data (empty history) and a master that began epoch 1 on a new folder.
    assert.deepEqual(divergence([], 5000, h([1, 32]), 9000), {
      commonEpoch: 0,
      agreedEnd: 32,
      relation: 'diverged',
    });
    // A slave with epochs facing a master without any (a wiped or pre-epoch master).
    assert.deepEqual(divergence(h([1, 32]), 5000, [], 9000), {
      commonEpoch: 0,
      agreedEnd: 32,
      relation: 'diverged',
    });
  });

  it('an adopted epoch the slave has not copied yet does not stretch agreement past its log end', () => {
    const slave = h([1, 32], [2, 4000], [3, 9000]); // adopted, copied only to 4050
    const master = h([1, 32], [2, 4000], [3, 9000], [5, 12_000]);
    assert.deepEqual(divergence(slave, 4050, master, 13_000), {
      commonEpoch: 3,
      agreedEnd: 4050,
      relation: 'behind',
    });
  });

  it('is symmetric in what is agreed', () => {
    const cases: [EpochEntry[], number, EpochEntry[], number][] = [
      [h([1, 32]), 5000, h([1, 32], [2, 4000]), 4100],
      [h([1, 32], [2, 3000]), 5000, h([1, 32], [3, 4000]), 8000],
      [[], 5000, h([1, 4800]), 9000],
      [h([1, 32], [4, 100]), 700, h([1, 32], [3, 90], [4, 100]), 900],
    ];
    for (const [a, ae, b, be] of cases)
      assert.equal(divergencePoint(a, ae, b, be), divergencePoint(b, be, a, ae));
  });
});

describe('mergeFollowerHistory / trimHistory', () => {
  it('keeps the local entries up to the common epoch, then the remote later ones', () => {
    const local = h([1, 32], [2, 3000], [4, 3000]);
    const remote = h([1, 32], [2, 3000], [3, 3500], [6, 7000]);
    assert.equal(commonEpoch(local, remote), 2);
    assert.deepEqual(mergeFollowerHistory(local, remote, 3000), h([1, 32], [2, 3000], [3, 3500], [6, 7000]));
  });

  it('refuses an agreed end inside an epoch only one side holds', () => {
    const slave = h([1, 32], [2, 3000]);
    const master = h([1, 32], [3, 4000]);
    assert.throws(
      () => mergeFollowerHistory(slave, master, 3500),
      /past the end of the common epoch 1 in the local history \(3000\)/,
    );
    assert.throws(() => mergeFollowerHistory(h([1, 32]), master, 4001), /in the remote history \(4000\)/);
  });

  it('trims adopted epochs past the log end, so a promoted follower can begin its own', () => {
    const adopted = h([1, 32], [2, 4000], [3, 9000]);
    assert.deepEqual(trimHistory(adopted, 4050), h([1, 32], [2, 4000]));
    assert.deepEqual(trimHistory(adopted, 9000), adopted);
  });
});
