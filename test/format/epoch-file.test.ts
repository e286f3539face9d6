import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { crc32 } from 'node:zlib';
import {
  EPOCH_MAGIC,
  decodeEpochHistory,
  encodeEpochHistory,
  epochHistoryProblem,
  type EpochEntry,
} from '../../src/format/epoch-file.js';

const SAMPLE: EpochEntry[] = [
  { epoch: 1, startId: 32 },
  { epoch: 2, startId: 4000 },
  { epoch: 7, startId: 4000 },
  { epoch: 2 ** 40 + 5, startId: 2 ** 50 + 3 },
];

function problem(data: Buffer): string {
  const d = decodeEpochHistory(data);
  assert.equal(d.ok, false, 'expected a problem');
  return d.ok ? '' : d.problem;
}

/** Rewrites the trailing CRC so that only the deliberate damage is found. */
function recrc(buf: Buffer): Buffer {
  buf.writeUInt32BE(crc32(buf.subarray(0, buf.length - 4)), buf.length - 4);
  return buf;
}

describe('epoch_history codec', () => {
  it('lays out magic, version, count, big-endian entries and a CRC32 of what precedes it', () => {
    const buf = encodeEpochHistory([{ epoch: 1, startId: 32 }]);
    assert.equal(buf.length, 8 + 4 + 4 + 16 + 4);
    assert.equal(buf.subarray(0, 8).toString('latin1'), 'IMSEPOCH');
    assert.equal(buf.readUInt32BE(8), 1);
    assert.equal(buf.readUInt32BE(12), 1);
    assert.equal(buf.readBigUInt64BE(16), 1n);
    assert.equal(buf.readBigInt64BE(24), 32n);
    assert.equal(buf.readUInt32BE(32), crc32(buf.subarray(0, 32)));
  });

  it('round-trips histories, including the empty one and ids above 2^32', () => {
    for (const h of [[], [{ epoch: 1, startId: 32 }], SAMPLE]) {
      const d = decodeEpochHistory(encodeEpochHistory(h));
      assert.deepEqual(d, { ok: true, value: h });
    }
    assert.equal(encodeEpochHistory([]).length, 20);
  });

  it('names bad magic, truncation, trailing bytes, crc mismatch and an unknown version', () => {
    const good = encodeEpochHistory(SAMPLE);
    assert.match(problem(Buffer.from('NOTEPOCH' + 'x'.repeat(30))), /bad magic "NOTEPOCH"/);
    assert.match(problem(Buffer.alloc(0)), /truncated: 0 bytes/);
    assert.match(problem(EPOCH_MAGIC.subarray(0, 5)), /truncated: 5 bytes/);
    assert.match(problem(good.subarray(0, 19)), /truncated: 19 bytes/);
    assert.match(problem(good.subarray(0, good.length - 1)), /truncated: 83 bytes where 4 entries need 84/);
    assert.match(problem(Buffer.concat([good, Buffer.alloc(3)])), /3 bytes past the end of 4 entries/);
    const flipped = Buffer.from(good);
    flipped[30] ^= 0x01;
    assert.match(problem(flipped), /crc mismatch: stored 0x[0-9a-f]{8}, computed 0x[0-9a-f]{8}/);
    const v2 = Buffer.from(good);
    v2.writeUInt32BE(2, 8);
    assert.match(problem(recrc(v2)), /unsupported format version 2/);
  });

  it('names epochs that do not strictly increase and start ids that decrease', () => {
    const same = recrc(
      encodeEpochHistory([
        { epoch: 1, startId: 32 },
        { epoch: 2, startId: 40 },
      ]),
    );
    same.writeUInt32BE(1, 16 + 16 + 4); // second epoch := 1
    assert.match(problem(recrc(same)), /entry 1: epochs not strictly increasing \(1 then 1\)/);
    const down = encodeEpochHistory([
      { epoch: 1, startId: 32 },
      { epoch: 2, startId: 40 },
    ]);
    down.writeUInt32BE(31, 16 + 16 + 8 + 4); // second start := 31
    assert.match(
      problem(recrc(down)),
      /entry 1: start ids decreasing \(epoch 1 starts at 32, epoch 2 at 31\)/,
    );
    const zero = encodeEpochHistory([{ epoch: 1, startId: 32 }]);
    zero.writeUInt32BE(0, 20);
    assert.match(problem(recrc(zero)), /entry 0: epoch 0 is not an integer ≥ 1/);
    const negative = encodeEpochHistory([{ epoch: 1, startId: 32 }]);
    negative.writeUInt32BE(0xffffffff, 24);
    assert.match(problem(recrc(negative)), /entry 0: start id is negative/);
    const huge = encodeEpochHistory([{ epoch: 1, startId: 32 }]);
    huge.writeUInt32BE(0x0020_0000, 16);
    assert.match(problem(recrc(huge)), /entry 0: epoch is larger than 2\^53 - 1/);
  });

  it('refuses to encode an invalid history', () => {
    assert.throws(
      () =>
        encodeEpochHistory([
          { epoch: 2, startId: 5 },
          { epoch: 2, startId: 9 },
        ]),
      RangeError,
    );
    assert.throws(
      () =>
        encodeEpochHistory([
          { epoch: 1, startId: 9 },
          { epoch: 2, startId: 5 },
        ]),
      /decreasing/,
    );
    assert.throws(() => encodeEpochHistory([{ epoch: 1.5, startId: 5 }]), /epoch 1.5/);
    assert.equal(
      epochHistoryProblem([
        { epoch: 1, startId: 9 },
        { epoch: 2, startId: 9 },
      ]),
      null,
    );
  });
});
