import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { describe, it } from 'node:test';
import { Cmd, MAX_BODY_SIZE, MAX_SYNC_FRAME_BODY } from '../../src/format/constants.js';
import { decodeRecord, type RawMessage } from '../../src/format/record.js';
import {
  BATCH_HEAD_SIZE,
  batchBodySize,
  decodeBatchBody,
  decodeSyncBeginBody,
  decodeSyncMessageBody,
  encodeBatchFrame,
  encodeFrame,
  encodeSyncBegin,
  encodeSyncMessageFrame,
  splitFrames,
} from '../../src/format/sync-frames.js';
import { FrameReader, SyncProtocolError } from '../../src/replication/frame-reader.js';
import { batchRecordIds, continuationProblem } from '../../src/replication/sync-slave.js';
import { fixturePath } from '../support/fixtures.js';

const wire = (name: string) => fs.readFileSync(fixturePath('wire', name));

function msg(cmd: number, body: string | Buffer, version = 1, flag = 0, seq = 0): RawMessage {
  return { cmd, seq, version, flag, body: Buffer.isBuffer(body) ? body : Buffer.from(body) };
}

describe('sync frames', () => {
  it('encodes MSG_STORAGE_SYNC_BEGIN exactly as a Go slave sends it', () => {
    assert.deepEqual(encodeSyncBegin(32), wire('sync_begin_cursor32.bin'));
    assert.deepEqual(encodeSyncBegin(266353), wire('sync_begin_cursor266353.bin'));
    const frames = splitFrames(wire('sync_begin_cursor266353.bin'));
    assert.equal(frames.frames.length, 1);
    assert.equal(frames.frames[0].cmd, Cmd.STORAGE_SYNC_BEGIN);
    assert.deepEqual(decodeSyncBeginBody(frames.frames[0].body), { ok: true, value: 266353 });
    assert.equal(decodeSyncBeginBody(Buffer.alloc(7)).ok, false);
    assert.match(
      (decodeSyncBeginBody(Buffer.from('ffffffffffffffff', 'hex')) as { problem: string }).problem,
      /out of range/,
    );
  });

  for (const cursor of [32, 266353]) {
    it(`decodes the Go master's stream from cursor ${cursor} and re-encodes it byte for byte`, () => {
      const stream = wire(`sync_stream_cursor${cursor}.bin`);
      const { frames, rest, problem } = splitFrames(stream);
      assert.equal(problem, null);
      assert.equal(rest, stream.length);
      assert.ok(frames.length >= 1);
      const out: Buffer[] = [];
      const clean = fs.readFileSync(fixturePath('clean', 'message_0'));
      let expectId = cursor;
      frames.forEach((f, i) => {
        assert.equal(f.cmd, Cmd.STORAGE_SYNC_MESSAGE_BATCH);
        assert.equal(f.seq, i + 1, 'Go numbers frames from 1');
        const d = decodeBatchBody(f.body);
        assert.ok(d.ok, d.ok ? '' : d.problem);
        const b = d.value;
        assert.equal(b.firstId, expectId);
        const ids = batchRecordIds(b.firstId, b.messages, 128 * 1024 * 1024);
        assert.equal(ids.at(-1), b.lastId);
        // Every message is the record at that id in the Go file.
        b.messages.forEach((m, k) => {
          const r = decodeRecord(clean, ids[k]);
          assert.equal(r.kind, 'ok');
          if (r.kind === 'ok')
            assert.deepEqual(
              { ...r.message, body: Buffer.from(r.message.body) },
              { ...m, body: Buffer.from(m.body) },
            );
          expectId = ids[k] + 20 + m.body.length;
        });
        out.push(encodeBatchFrame(f.seq, b.firstId, b.lastId, b.messages));
      });
      assert.equal(expectId, clean.length, 'the stream ends at the end of the file');
      assert.deepEqual(Buffer.concat(out), stream);
    });
  }

  it('round-trips batches and single sync messages', () => {
    const messages = [
      msg(Cmd.IM, 'hello'),
      msg(Cmd.OFFLINE_V2, Buffer.alloc(48, 7), 0, 4),
      msg(Cmd.SYSTEM, ''),
    ];
    const frame = encodeBatchFrame(9, 100, 200, messages);
    assert.equal(frame.length, 12 + batchBodySize(messages));
    const { frames } = splitFrames(frame);
    assert.equal(frames[0].seq, 9);
    const d = decodeBatchBody(frames[0].body);
    assert.ok(d.ok);
    assert.deepEqual(d.value, { firstId: 100, lastId: 200, messages });
    const empty = decodeBatchBody(splitFrames(encodeBatchFrame(1, 0, 0, [])).frames[0].body);
    assert.deepEqual(empty, { ok: true, value: { firstId: 0, lastId: 0, messages: [] } });

    const one = encodeSyncMessageFrame(3, 2 ** 40 + 5, -2n, msg(Cmd.GROUP_IM, 'x'));
    const f = splitFrames(one).frames[0];
    assert.equal(f.cmd, Cmd.STORAGE_SYNC_MESSAGE);
    assert.deepEqual(decodeSyncMessageBody(f.body), {
      ok: true,
      value: { msgId: 2 ** 40 + 5, deviceId: -2n, message: msg(Cmd.GROUP_IM, 'x') },
    });
  });

  it('names what is wrong with a frame that does not parse', () => {
    const good = encodeBatchFrame(1, 32, 57, [msg(Cmd.IM, 'a'), msg(Cmd.IM, 'b')]).subarray(12);
    const problem = (b: Buffer) => {
      const d = decodeBatchBody(b);
      assert.equal(d.ok, false);
      return (d as { problem: string }).problem;
    };
    assert.match(problem(good.subarray(0, 10)), /shorter than its 20-byte head/);
    assert.match(problem(good.subarray(0, good.length - 1)), /ends inside message 1/);
    assert.match(problem(Buffer.concat([good, Buffer.from([0])])), /1 bytes after its 2 messages/);
    const negative = Buffer.from(good);
    negative.writeInt32BE(-1, 16);
    assert.match(problem(negative), /count -1 is negative/);
    const huge = Buffer.from(good);
    huge.writeInt32BE(MAX_BODY_SIZE + 1, BATCH_HEAD_SIZE);
    assert.match(problem(huge), /message 0 .*bad message length 32768/);
    const backwards = Buffer.from(good);
    backwards.writeUInt32BE(1, 12);
    assert.match(problem(backwards), /last_id 1 is before first_id 32/);

    const head = Buffer.alloc(12);
    head.writeInt32BE(MAX_SYNC_FRAME_BODY + 1, 0);
    assert.match(splitFrames(head).problem!, /over the limit/);
    head.writeInt32BE(-5, 0);
    assert.match(splitFrames(head).problem!, /negative/);
    assert.match((decodeSyncMessageBody(Buffer.alloc(10)) as { problem: string }).problem, /shorter than 18/);
  });

  it('FrameReader cuts the same frames from a stream fed in odd pieces, and refuses a bad header at once', () => {
    const stream = wire('sync_stream_cursor266353.bin');
    const whole = splitFrames(stream).frames;
    const reader = new FrameReader();
    const got = [];
    for (let off = 0; off < stream.length; off += 7919) {
      reader.push(stream.subarray(off, off + 7919));
      for (let f = reader.next(); f; f = reader.next()) got.push(f);
    }
    assert.equal(reader.bufferedBytes, 0);
    assert.deepEqual(got, whole);

    const strict = new FrameReader(8, (h) =>
      h.cmd === Cmd.STORAGE_SYNC_BEGIN ? null : `wrong cmd ${h.cmd}`,
    );
    strict.push(encodeFrame(1, 99, Buffer.alloc(8)).subarray(0, 12));
    assert.throws(
      () => strict.next(),
      (e: Error) => e instanceof SyncProtocolError && /wrong cmd 99/.test(e.message),
    );
    const small = new FrameReader(8);
    small.push(Buffer.from('ffffffff0000000000000000', 'hex').fill(0x7f, 0, 1));
    assert.throws(() => small.next(), /over the limit of 8 bytes/);
  });

  it('slave rules: ids follow first_id and roll to the next block like the master; a gap is a problem, never padding', () => {
    const block = 65536;
    const big = msg(Cmd.IM, Buffer.alloc(30000));
    // 32 + 30020 + 30020 = 60072; the third record would pass 65536, so it starts block 1.
    const ids = batchRecordIds(32, [big, big, big], block);
    assert.deepEqual(ids, [32, 30052, block + 32]);
    const three = [big, big, big];
    assert.equal(continuationProblem(32, ids, three, block), null);
    assert.equal(continuationProblem(30052, ids, three, block), null, 'what we have is skipped');
    assert.equal(continuationProblem(60072, ids, three, block), null, 'skip up to the end, then roll');
    assert.match(
      continuationProblem(32, [32, 30100], [big, big], block)!,
      /gap: the master sent record 30100 but our log ends at 30052/,
    );
    assert.match(continuationProblem(40, [60072], [big], block)!, /does not fit/);
    assert.match(
      continuationProblem(32, [block + 32], [msg(Cmd.IM, 'small')], block)!,
      /gap/,
      'a roll needs a record that does not fit',
    );
    assert.match(
      continuationProblem(
        100,
        [60, 90],
        [msg(Cmd.IM, Buffer.alloc(10)), msg(Cmd.IM, Buffer.alloc(10))],
        block,
      )!,
      /overlaps/,
    );
  });
});
