import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BLOCK_HEADER_SIZE, Cmd, MAGIC, MAX_BODY_SIZE } from '../../src/format/constants.js';
import {
  decodeCustomerBody,
  decodeGroupEntry,
  decodeImBody,
  decodeOfflineEntry,
  encodeCustomerBody,
  encodeGroupEntry,
  encodeImBody,
  encodeOfflineEntry,
  replyBody,
  saveBodyProblem,
} from '../../src/format/bodies.js';
import { int64FromParts, int64Hi, int64Lo, int64ToJson, readId, writeId } from '../../src/format/int64.js';
import {
  blockHeaderProblem,
  decodeFramedMessage,
  decodeRecord,
  encodeBlockHeader,
  encodeRecord,
  writeFramedMessage,
} from '../../src/format/record.js';

const big = 2n ** 62n + 12345n;

describe('record framing', () => {
  it('encodes a record as MAGIC, header, body, MAGIC and decodes it back', () => {
    const body = Buffer.from('hello, 你好');
    const rec = encodeRecord({ cmd: Cmd.IM, seq: 7, version: 1, flag: 4, body });
    assert.equal(rec.length, 4 + 12 + body.length + 4);
    assert.equal(rec.readUInt32BE(0), MAGIC);
    assert.equal(rec.readInt32BE(4), body.length);
    assert.equal(rec.readUInt32BE(rec.length - 4), MAGIC);
    const d = decodeRecord(rec, 0);
    assert.equal(d.kind, 'ok');
    if (d.kind !== 'ok') return;
    assert.deepEqual(
      { ...d.message, body: Buffer.from(d.message.body) },
      { cmd: Cmd.IM, seq: 7, version: 1, flag: 4, body },
    );
    assert.equal(d.size, rec.length);
  });

  it('reports a record cut short, a bad magic, a bad length and a bad trailing magic', () => {
    const rec = encodeRecord({ cmd: Cmd.SYSTEM, seq: 0, version: 1, flag: 0, body: Buffer.from('abc') });
    assert.equal(decodeRecord(rec, 0, rec.length - 1).kind, 'short');
    const badMagic = Buffer.from(rec);
    badMagic[0] = 0;
    assert.match((decodeRecord(badMagic, 0) as { reason: string }).reason, /bad record magic/);
    const badLen = Buffer.from(rec);
    badLen.writeInt32BE(MAX_BODY_SIZE + 1, 4);
    assert.match((decodeRecord(badLen, 0) as { reason: string }).reason, /bad body length/);
    const badTail = Buffer.from(rec);
    badTail[badTail.length - 1] ^= 0xff;
    assert.match((decodeRecord(badTail, 0) as { reason: string }).reason, /bad trailing magic/);
  });

  it('frames a message without MAGIC for the sync wire', () => {
    const msg = { cmd: Cmd.OFFLINE_V2, seq: 3, version: 0, flag: 4, body: Buffer.alloc(48, 1) };
    const buf = Buffer.alloc(60);
    assert.equal(writeFramedMessage(buf, 0, msg), 60);
    const d = decodeFramedMessage(buf, 0, 60);
    assert.equal(d.kind, 'ok');
    if (d.kind === 'ok') assert.deepEqual({ ...d.message, body: Buffer.from(d.message.body) }, msg);
    assert.equal(decodeFramedMessage(buf, 0, 59).kind, 'short');
  });

  it('writes the Go block header and rejects a foreign one', () => {
    const h = encodeBlockHeader();
    assert.equal(h.length, BLOCK_HEADER_SIZE);
    assert.equal(h.readUInt32BE(0), MAGIC);
    assert.equal(h.readUInt32BE(4), 1 << 16);
    assert.ok(h.subarray(8).every((b) => b === 0));
    assert.equal(blockHeaderProblem(h), null);
    const bad = Buffer.from(h);
    bad.writeUInt32BE(2, 4);
    assert.match(blockHeaderProblem(bad)!, /version/);
    assert.match(blockHeaderProblem(h.subarray(0, 10))!, /10 bytes/);
  });
});

describe('bodies', () => {
  it('round-trips an IM body (version 1) and reads version 0', () => {
    const im = {
      sender: big,
      receiver: 10037n,
      timestamp: 1550000000,
      msgid: 42,
      content: Buffer.from('{"text":"hi 👋"}'),
    };
    const buf = encodeImBody(im);
    assert.deepEqual(decodeImBody(buf, 1), im);
    const v0 = Buffer.concat([buf.subarray(0, 16), buf.subarray(20)]);
    assert.deepEqual(decodeImBody(v0, 0), { ...im, timestamp: 0 });
    // A client always receives version 1: an old v0 body gains a zero timestamp.
    assert.deepEqual(decodeImBody(replyBody(Cmd.IM, 0, v0), 1), { ...im, timestamp: 0 });
    assert.equal(decodeImBody(buf.subarray(0, 23), 1), null);
  });

  it('round-trips a customer body', () => {
    const c = {
      customerAppid: 8n,
      customerId: big,
      storeId: 77n,
      sellerId: 500001n,
      timestamp: 1550000001,
      content: Buffer.from('x'),
    };
    assert.deepEqual(decodeCustomerBody(encodeCustomerBody(c)), c);
    assert.equal(decodeCustomerBody(Buffer.alloc(35)), null);
  });

  it('round-trips MSG_OFFLINE_V2 and reads both old MSG_OFFLINE forms', () => {
    const e = {
      appid: 7n,
      receiver: big,
      msgid: 2 ** 40 + 5,
      deviceId: 99n,
      prevMsgid: 1234,
      prevPeerMsgid: 1000,
    };
    assert.deepEqual(decodeOfflineEntry(Cmd.OFFLINE_V2, encodeOfflineEntry(e)), e);
    const v1 = Buffer.alloc(40);
    v1.writeBigInt64BE(7n, 0);
    v1.writeBigInt64BE(5n, 8);
    writeId(v1, 300, 16);
    v1.writeBigInt64BE(9n, 24);
    writeId(v1, 100, 32);
    assert.deepEqual(decodeOfflineEntry(Cmd.OFFLINE, v1), {
      appid: 7n,
      receiver: 5n,
      msgid: 300,
      deviceId: 9n,
      prevMsgid: 100,
      prevPeerMsgid: 100,
    });
    const v0 = Buffer.concat([v1.subarray(0, 24), v1.subarray(32)]);
    assert.deepEqual(decodeOfflineEntry(Cmd.OFFLINE, v0), {
      appid: 7n,
      receiver: 5n,
      msgid: 300,
      deviceId: 0n,
      prevMsgid: 100,
      prevPeerMsgid: 100,
    });
    assert.equal(decodeOfflineEntry(Cmd.OFFLINE_V2, Buffer.alloc(47)), null);
  });

  it('round-trips MSG_GROUP_IM_LIST and reads the 40-byte form', () => {
    const e = { appid: 8n, msgid: 555, gid: 2n ** 41n, deviceId: 3n, prevMsgid: 100 };
    const buf = encodeGroupEntry(e);
    assert.deepEqual(decodeGroupEntry(buf), { ...e, receiver: 0n });
    const old = Buffer.concat([buf.subarray(0, 32), buf.subarray(40)]);
    assert.deepEqual(decodeGroupEntry(old), { ...e, deviceId: 0n, receiver: 0n });
  });

  it('says why a body cannot be saved', () => {
    assert.equal(saveBodyProblem(Cmd.IM, Buffer.alloc(24)), null);
    assert.match(saveBodyProblem(Cmd.IM, Buffer.alloc(10))!, /too short/);
    assert.match(saveBodyProblem(Cmd.CUSTOMER, Buffer.alloc(30))!, /too short/);
    assert.match(saveBodyProblem(99, Buffer.alloc(30))!, /not a message kind/);
    assert.equal(saveBodyProblem(Cmd.SYSTEM, Buffer.alloc(MAX_BODY_SIZE)), null);
    assert.match(saveBodyProblem(Cmd.SYSTEM, Buffer.alloc(MAX_BODY_SIZE + 1))!, /limit is 32767/);
  });
});

describe('int64 helpers', () => {
  it('splits and joins signed 64-bit values', () => {
    for (const v of [0n, 1n, -1n, big, -big, 2n ** 63n - 1n, -(2n ** 63n)]) {
      assert.equal(int64FromParts(int64Hi(v), int64Lo(v)), v);
    }
  });

  it('reads ids and marks impossible ones', () => {
    const b = Buffer.alloc(8);
    writeId(b, 2 ** 45 + 7, 0);
    assert.equal(readId(b, 0), 2 ** 45 + 7);
    b.writeBigInt64BE(-1n, 0);
    assert.ok(Number.isNaN(readId(b, 0)));
  });

  it('gives JSON numbers when safe and strings otherwise', () => {
    assert.equal(int64ToJson(5n), 5);
    assert.equal(int64ToJson(2n ** 60n), '1152921504606846976');
  });
});
