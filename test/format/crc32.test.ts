import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { crc32 } from 'node:zlib';
import { NATIVE_FROM, crc32Js, crc32Of } from '../../src/format/crc32.js';
import { BlockChecksums } from '../../src/storage/record-checksums.js';

describe('crc32Of', () => {
  it('equals zlib.crc32 for every length up to past the native switch, at every alignment', () => {
    const buf = randomBytes(NATIVE_FROM * 2 + 64);
    for (let start = 0; start < 9; start++) {
      for (let len = 0; len <= NATIVE_FROM + 40; len++) {
        const want = crc32(buf.subarray(start, start + len));
        assert.equal(crc32Js(buf, start, start + len), want, `js, start ${start} length ${len}`);
        assert.equal(crc32Of(buf, start, start + len), want, `start ${start} length ${len}`);
      }
    }
  });

  it('equals zlib.crc32 on views into a larger buffer, all-ones bytes and big records', () => {
    const big = randomBytes(40_000);
    const view = big.subarray(1234, 1234 + 33_000);
    for (const [s, e] of [
      [0, 33_000],
      [7, 20],
      [100, 611],
      [5, 5],
    ])
      assert.equal(crc32Of(view, s, e), crc32(view.subarray(s, e)));
    const ones = Buffer.alloc(300, 0xff);
    assert.equal(crc32Js(ones, 0, 300), crc32(ones));
    assert.equal(crc32Js(Buffer.from('123456789'), 0, 9), 0xcbf43926, 'the CRC-32 check value');
  });
});

describe('BlockChecksums.find', () => {
  it('finds every entry and nothing else, for even and very uneven record sizes', () => {
    const layouts: Record<string, (i: number) => number> = {
      even: () => 76,
      alternating: (i) => (i % 2 ? 76 : 134),
      // one huge record among small ones: the interpolation guesses are far off, bisection takes over
      skewed: (i) => (i === 3 ? 32_000 : i % 97 === 0 ? 9_000 : 20),
      random: () => 20 + Math.floor(Math.random() * 2000),
    };
    for (const [name, size] of Object.entries(layouts)) {
      const sums = new BlockChecksums(0, 0, 4);
      const offsets: number[] = [];
      let off = 32;
      for (let i = 0; i < 5000; i++) {
        offsets.push(off);
        sums.add(off, (off * 2654435761) >>> 0);
        off += size(i);
      }
      for (const o of offsets) assert.equal(sums.find(o), (o * 2654435761) >>> 0, `${name}: ${o}`);
      for (const o of [0, 31, 33, offsets[10] + 1, offsets[4999] - 1, off, off + 1000])
        assert.equal(sums.find(o), -1, `${name}: ${o} is no entry`);
    }
    const empty = new BlockChecksums(0, 0);
    assert.equal(empty.find(32), -1);
    const one = new BlockChecksums(0, 0);
    one.add(32, 7);
    assert.equal(one.find(32), 7);
    assert.equal(one.find(33), -1);
  });
});
