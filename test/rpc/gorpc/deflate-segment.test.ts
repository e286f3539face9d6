import assert from 'node:assert/strict';
import * as zlib from 'node:zlib';
import { describe, it } from 'node:test';
import { deflateSegment } from '../../../src/rpc/gorpc/gorpc-connection.js';

describe('deflate pieces made one at a time', () => {
  it('read back as one raw deflate stream by an inflater that never restarts (as Go reads it)', async () => {
    const pieces = [
      Buffer.from('a'),
      Buffer.alloc(0),
      Buffer.from('short reply, stored as is'),
      Buffer.from('a longer batch of replies that repeats itself, '.repeat(40)),
      Buffer.alloc(100_000, 7),
      Buffer.from('x'),
    ];
    const stream = Buffer.concat(pieces.map(deflateSegment));
    // All at once, and through a streaming inflater fed piece by piece.
    const whole = zlib.inflateRawSync(stream, { finishFlush: zlib.constants.Z_SYNC_FLUSH });
    assert.ok(whole.equals(Buffer.concat(pieces)));
    const inflate = zlib.createInflateRaw();
    const out: Buffer[] = [];
    inflate.on('data', (c: Buffer) => out.push(c));
    for (const p of pieces) {
      inflate.write(deflateSegment(p));
      await new Promise<void>((resolve) => inflate.flush(zlib.constants.Z_SYNC_FLUSH, () => resolve()));
    }
    assert.ok(Buffer.concat(out).equals(Buffer.concat(pieces)));
  });

  it('compresses what is worth compressing, and stores small batches with 5 bytes of framing', () => {
    const big = Buffer.from('abcdefgh'.repeat(1000));
    assert.ok(deflateSegment(big).length < big.length / 10);
    assert.equal(deflateSegment(Buffer.from('tiny')).length, 4 + 5);
  });
});
