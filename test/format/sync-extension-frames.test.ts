/** The ims extension frames of the sync link (hello, acknowledgement, heartbeat): round trips and refusals. */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { describe, it } from 'node:test';
import { Cmd } from '../../src/format/constants.js';
import {
  SYNC_FLAG_ACKNOWLEDGED_END,
  SYNC_FLAG_IMS_EXTENSIONS,
  decodeAckBody,
  decodeFrameHeader,
  decodeHeartbeatBody,
  decodeHelloBody,
  decodeSyncBeginBody,
  encodeAckFrame,
  encodeExtendedSyncBegin,
  encodeHeartbeatFrame,
  encodeHelloFrame,
  splitFrames,
} from '../../src/format/sync-frames.js';
import { fixturePath } from '../support/fixtures.js';

const bodyOf = (frame: Buffer) => splitFrames(frame).frames[0].body;

describe('sync link extension frames', () => {
  it("the extended SYNC_BEGIN is the Go slave's frame with the extension bit in the flag byte", () => {
    const go = fs.readFileSync(fixturePath('wire', 'sync_begin_cursor266353.bin'));
    const ours = encodeExtendedSyncBegin(266353);
    assert.equal(ours.length, go.length);
    assert.equal(decodeFrameHeader(ours).flag, SYNC_FLAG_IMS_EXTENSIONS | SYNC_FLAG_ACKNOWLEDGED_END);
    assert.equal(decodeFrameHeader(go).flag, 0);
    const masked = Buffer.from(ours);
    masked[10] = 0;
    assert.deepEqual(masked, go);
    const cursor = decodeSyncBeginBody(bodyOf(ours));
    assert.ok(cursor.ok && cursor.value === 266353);
  });

  it('hello, acknowledgement and heartbeat round-trip', () => {
    const hello = {
      epoch: 7,
      logEnd: 2 ** 40 + 5,
      history: [
        { epoch: 1, startId: 32 },
        { epoch: 4, startId: 9000 },
        { epoch: 7, startId: 2 ** 40 },
      ],
    };
    const h = encodeHelloFrame(3, hello);
    assert.equal(decodeFrameHeader(h).cmd, Cmd.STORAGE_SYNC_HELLO);
    assert.deepEqual(decodeHelloBody(bodyOf(h)), { ok: true, value: hello });
    const empty = decodeHelloBody(bodyOf(encodeHelloFrame(1, { epoch: 0, logEnd: 32, history: [] })));
    assert.deepEqual(empty, { ok: true, value: { epoch: 0, logEnd: 32, history: [] } });
    const ack = { durableEnd: 123456789, epoch: 7 };
    assert.deepEqual(decodeAckBody(bodyOf(encodeAckFrame(9, ack))), { ok: true, value: ack });
    const hb = { epoch: 7, logEnd: 99, sentAt: 1_764_000_000_000 };
    assert.deepEqual(decodeHeartbeatBody(bodyOf(encodeHeartbeatFrame(2, hb))), { ok: true, value: hb });
  });

  it('refuses malformed bodies, naming what is wrong', () => {
    const hello = bodyOf(
      encodeHelloFrame(1, {
        epoch: 3,
        logEnd: 100,
        history: [
          { epoch: 1, startId: 32 },
          { epoch: 3, startId: 64 },
        ],
      }),
    );
    const cases: [Buffer, RegExp][] = [
      [hello.subarray(0, 10), /shorter than 20/],
      [hello.subarray(0, hello.length - 1), /expected 52 for 2 epochs/],
      [Buffer.concat([hello, Buffer.alloc(16)]), /expected 52 for 2 epochs/],
    ];
    const count = Buffer.from(hello);
    count.writeInt32BE(-1, 16);
    cases.push([count, /epoch count -1 is out of range/]);
    const order = Buffer.from(hello);
    order.writeUInt32BE(3, 24); // first entry's epoch low word: 3, not below the next one (3)
    cases.push([order, /not in order at entry 1/]);
    const newer = Buffer.from(hello);
    newer.writeUInt32BE(2, 4); // epoch 2, but the history holds epoch 3
    cases.push([newer, /holds epoch 3, newer than its epoch 2/]);
    const neg = Buffer.from(hello);
    neg.writeInt32BE(-1, 8);
    cases.push([neg, /log_end is out of range/]);
    for (const [body, why] of cases) {
      const d = decodeHelloBody(body);
      assert.equal(d.ok, false);
      if (!d.ok) assert.match(d.problem, why);
    }
    const ack = decodeAckBody(Buffer.alloc(15));
    assert.ok(!ack.ok && /body is 15 bytes, expected 16/.test(ack.problem));
    const badAck = decodeAckBody(Buffer.alloc(16, 0xff));
    assert.ok(!badAck.ok && /durable_end is out of range/.test(badAck.problem));
    const hb = decodeHeartbeatBody(Buffer.alloc(23));
    assert.ok(!hb.ok && /body is 23 bytes, expected 24/.test(hb.problem));
  });
});
