import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { IdTable } from '../../src/storage/id-table.js';

describe('IdTable', () => {
  it('stores, finds and updates 200k keys across growth, with full 64-bit key words', () => {
    const t = new IdTable(2);
    const n = 200_000;
    for (let i = 0; i < n; i++) {
      const e = t.upsert(i % 7, 0xffffffff - (i % 3), i >>> 16, (i * 2654435761) >>> 0);
      t.setValue(e, 0, i * 10);
      t.setValue(e, 1, i * 10 + 1);
      t.setAux(e, i);
    }
    assert.equal(t.size, n);
    for (let i = 0; i < n; i += 997) {
      const e = t.find(i % 7, 0xffffffff - (i % 3), i >>> 16, (i * 2654435761) >>> 0);
      assert.ok(e >= 0);
      assert.equal(t.getValue(e, 0), i * 10);
      assert.equal(t.getValue(e, 1), i * 10 + 1);
      assert.equal(t.getAux(e), i);
    }
    assert.equal(t.find(8, 0, 0, 0), -1);
    const again = t.upsert(3, 0xffffffff - (3 % 3), 0, (3 * 2654435761) >>> 0);
    assert.equal(t.getValue(again, 0), 30);
    assert.equal(t.size, n);
  });

  it('snapshots a frozen copy that later writes do not change', () => {
    const t = new IdTable(1);
    const e = t.upsert(0, 1, 0, 2);
    t.setValue(e, 0, 100);
    const snap = t.snapshot();
    t.setValue(e, 0, 200);
    t.upsert(0, 1, 0, 3);
    assert.equal(snap.count, 1);
    assert.equal(snap.values[0][0], 100);
    assert.deepEqual(Array.from(snap.keys[0].subarray(0, 4)), [0, 1, 0, 2]);
  });

  it('costs well under 64 bytes a user', () => {
    const t = new IdTable(2);
    for (let i = 0; i < 300_000; i++) t.upsert(0, 7, 0, i);
    assert.ok(t.byteSize / t.size < 64, `${t.byteSize / t.size} bytes a user`);
  });
});
