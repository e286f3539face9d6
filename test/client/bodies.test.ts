import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  decodeBody,
  encodeBody,
  ImsBodyError,
  MessageCmd,
  type BodyFields,
  type CustomerFields,
  type ImFields,
  type TextFields,
} from '../../src/client/index.js';
import { decodeCustomerBody, decodeImBody } from '../../src/format/bodies.js';
import { MAX_BODY_SIZE } from '../../src/format/constants.js';
import { loadManifest } from '../support/fixtures.js';

const INT64_MAX = 2n ** 63n - 1n;
const INT64_MIN = -(2n ** 63n);

/** Asserts that `fn` throws an ImsBodyError with this message (a regexp on it), cmd and field. */
function throwsBody(fn: () => unknown, message: RegExp, cmd: unknown, field?: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ImsBodyError, String(err));
    assert.match(err.message, message);
    assert.equal(err.cmd, cmd);
    assert.equal(err.field, field);
    return true;
  });
}

describe('encodeBody / decodeBody round trips', () => {
  it('IM bodies (cmd 4 and 8): int64 as bigint, number or string; content as string or Buffer', () => {
    for (const cmd of [MessageCmd.IM, MessageCmd.GROUP_IM]) {
      const raw = encodeBody(cmd, {
        sender: 10001,
        receiver: '4294967297',
        timestamp: 1551000000,
        msgid: 7,
        content: '{"text":"你好 👋"}',
      });
      assert.equal(raw.length, 24 + Buffer.byteLength('{"text":"你好 👋"}'));
      const fields: ImFields = decodeBody(cmd, raw);
      assert.deepEqual(fields, {
        sender: 10001n,
        receiver: 4294967297n,
        timestamp: 1551000000,
        msgid: 7,
        content: '{"text":"你好 👋"}',
      });
      assert.deepEqual(encodeBody(cmd, fields), raw);
      const fromBuffer = encodeBody(cmd, { ...fields, content: Buffer.from(fields.content) });
      assert.deepEqual(fromBuffer, raw);
    }
  });

  it('IM bodies at the edges of the int64 and int32 ranges, and with empty content', () => {
    const edges = {
      sender: INT64_MIN,
      receiver: INT64_MAX,
      timestamp: -(2 ** 31),
      msgid: 2 ** 31 - 1,
      content: '',
    };
    const raw = encodeBody(4, edges);
    assert.equal(raw.length, 24);
    assert.deepEqual(decodeBody(4, raw), edges);
    const asStrings = encodeBody(4, {
      ...edges,
      sender: '-9223372036854775808',
      receiver: '9223372036854775807',
    });
    assert.deepEqual(asStrings, raw);
    assert.deepEqual(decodeBody(4, encodeBody(4, { ...edges, sender: -5, receiver: '-0' })), {
      ...edges,
      sender: -5n,
      receiver: 0n,
    });
  });

  it('customer bodies (cmd 24 and 25) in Go 2.0 field order', () => {
    for (const cmd of [MessageCmd.CUSTOMER, MessageCmd.CUSTOMER_SUPPORT]) {
      const input = {
        customerAppid: 8n,
        customerId: 2n ** 40n + 3n,
        storeId: '77',
        sellerId: 500001,
        timestamp: 1551000225,
        content: '{"text":"在吗"}',
      };
      const raw = encodeBody(cmd, input);
      // customer_appid, customer_id, store_id, seller_id (int64 each), timestamp int32, content
      assert.equal(raw.readBigInt64BE(0), 8n);
      assert.equal(raw.readBigInt64BE(8), 2n ** 40n + 3n);
      assert.equal(raw.readBigInt64BE(16), 77n);
      assert.equal(raw.readBigInt64BE(24), 500001n);
      assert.equal(raw.readInt32BE(32), 1551000225);
      assert.equal(raw.subarray(36).toString(), '{"text":"在吗"}');
      const fields: CustomerFields = decodeBody(cmd, raw);
      assert.deepEqual(fields, { ...input, storeId: 77n, sellerId: 500001n });
      assert.deepEqual(encodeBody(cmd, fields), raw);
    }
  });

  it('text bodies (cmd 7, 21, 36): the body is the UTF-8 text itself', () => {
    for (const cmd of [MessageCmd.GROUP_NOTIFICATION, MessageCmd.SYSTEM, MessageCmd.NOTIFICATION]) {
      const text = `{"notice":"系统 ${cmd}\\nline"}`;
      const raw = encodeBody(cmd, { text });
      assert.deepEqual(raw, Buffer.from(text, 'utf8'));
      const fields: TextFields = decodeBody(cmd, raw);
      assert.deepEqual(fields, { text });
      assert.deepEqual(encodeBody(cmd, { text: Buffer.from(text) }), raw);
      assert.deepEqual(decodeBody(cmd, encodeBody(cmd, { text: '' })), { text: '' });
    }
  });

  it('decodes from a Uint8Array view as well as a Buffer', () => {
    const raw = encodeBody(4, { sender: 1, receiver: 2, timestamp: 3, msgid: 4, content: 'view' });
    const padded = new Uint8Array(raw.length + 10);
    padded.set(raw, 5);
    assert.deepEqual(decodeBody(4, padded.subarray(5, 5 + raw.length)), decodeBody(4, raw));
  });

  it('accepts a body of exactly the size limit', () => {
    const content = 'x'.repeat(MAX_BODY_SIZE - 24);
    const raw = encodeBody(4, { sender: 1, receiver: 2, timestamp: 0, msgid: 0, content });
    assert.equal(raw.length, MAX_BODY_SIZE);
    assert.equal(decodeBody(4, raw).content, content);
  });
});

describe('bodies from the Go ims 2.0 fixture', () => {
  const saves = loadManifest().saves;

  it('decode and re-encode to the identical bytes, for every save of every cmd', () => {
    const seen = new Map<number, number>();
    for (const save of saves) {
      const raw = Buffer.from(save.req.Raw, 'base64');
      const fields = decodeBody(save.req.Cmd, raw);
      assert.deepEqual(encodeBody(save.req.Cmd, fields), raw, `save ${save.i} (cmd ${save.req.Cmd})`);
      seen.set(save.req.Cmd, (seen.get(save.req.Cmd) ?? 0) + 1);
    }
    // Every cmd the server stores occurs in the fixture, so every layout is held to Go's bytes.
    assert.deepEqual(
      [...seen.keys()].sort((a, b) => a - b),
      [4, 7, 8, 21, 24, 25, 36],
    );
    assert.equal(saves.length, 2500);
  });

  it('reads the fields Go wrote', () => {
    const first = saves.find((s) => s.i === 0)!;
    assert.equal(first.req.Cmd, 4);
    assert.deepEqual(decodeBody(4, Buffer.from(first.req.Raw, 'base64')), {
      sender: 10037n,
      receiver: 10031n,
      timestamp: 1551000000,
      msgid: 1,
      content: '{"text":"🎉 谢谢 you a&b 群组 back\\\\slash a&b"}',
    });
    const customer = saves.find((s) => s.i === 395)!;
    assert.equal(customer.req.Cmd, 24);
    assert.deepEqual(decodeBody(24, Buffer.from(customer.req.Raw, 'base64')), {
      customerAppid: 7n,
      customerId: 10002n,
      storeId: 77n,
      sellerId: 500002n,
      timestamp: 1551000225,
      content: '{"text":"你好 back\\\\slash call thanks you later \\"quoted\\" 没问题 you a&b hello me"}',
    });
    // A super-group IM whose receiver (the group id) is above 2^40.
    const group = saves.find((s) => s.i === 17)!;
    assert.equal(group.req.Cmd, 8);
    assert.ok(decodeBody(8, Buffer.from(group.req.Raw, 'base64')).receiver > 2n ** 40n);
  });

  it('agrees with the server codec (src/format/bodies.ts) field by field', () => {
    for (const save of saves.slice(0, 500)) {
      const raw = Buffer.from(save.req.Raw, 'base64');
      const cmd = save.req.Cmd;
      const fields = decodeBody(cmd, raw) as BodyFields;
      if (cmd === 4 || cmd === 8) {
        const im = decodeImBody(raw, 1)!;
        assert.deepEqual(fields, { ...im, content: im.content.toString('utf8') });
      } else if (cmd === 24 || cmd === 25) {
        const c = decodeCustomerBody(raw)!;
        assert.deepEqual(fields, { ...c, content: c.content.toString('utf8') });
      } else assert.deepEqual(fields, { text: raw.toString('utf8') });
    }
  });
});

describe('encodeBody errors name the cmd and the field', () => {
  const im = { sender: 1n, receiver: 2n, timestamp: 3, msgid: 4, content: 'hi' };
  const customer = {
    customerAppid: 1n,
    customerId: 2n,
    storeId: 3n,
    sellerId: 4n,
    timestamp: 5,
    content: 'hi',
  };
  /** Calls encodeBody with fields the types would refuse (as a JS caller could). */
  const encodeAny = (cmd: number, fields: unknown) => encodeBody(cmd, fields as BodyFields);

  it('an unknown cmd', () => {
    throwsBody(
      () => encodeAny(5, im),
      /^encodeBody\(5\): cmd 5 is not a message kind ims stores \(4, 7, 8, 21, 24, 25, 36\)$/,
      5,
    );
    throwsBody(() => encodeAny(250, im), /^encodeBody\(250\): cmd 250 is not a message kind/, 250);
    throwsBody(() => encodeBody('4' as unknown as number, im), /^encodeBody\("4"\): cmd "4" is not/, '4');
  });

  it('fields that are not an object', () => {
    throwsBody(
      () => encodeAny(4, null),
      /^encodeBody\(4\): fields must be an object \{sender, receiver, timestamp, msgid, content\}, got null$/,
      4,
    );
    throwsBody(
      () => encodeAny(21, 'text'),
      /^encodeBody\(21\): fields must be an object \{text\}, got "text"$/,
      21,
    );
    throwsBody(
      () => encodeAny(7, Buffer.from('x')),
      /^encodeBody\(7\): fields must be an object \{text\}, got a Buffer of 1 bytes$/,
      7,
    );
  });

  it('each missing field of each layout', () => {
    const cases: [number, Record<string, unknown>][] = [
      [4, im],
      [8, im],
      [24, customer],
      [25, customer],
      [7, { text: 'x' }],
      [21, { text: 'x' }],
      [36, { text: 'x' }],
    ];
    for (const [cmd, full] of cases) {
      for (const field of Object.keys(full)) {
        const fields = { ...full };
        delete fields[field];
        throwsBody(
          () => encodeAny(cmd, fields),
          new RegExp(`^encodeBody\\(${cmd}\\): field "${field}" is missing; it must be an? `),
          cmd,
          field,
        );
      }
    }
  });

  it('a mistyped or out-of-range int64 field', () => {
    const int64 = 'must be an int64 \\(bigint, safe integer or decimal string\\), got';
    const cases: [unknown, string][] = [
      [1.5, '1\\.5'],
      [Number.NaN, 'NaN'],
      ['12a', '"12a"'],
      ['', '""'],
      [' 12', '" 12"'],
      ['0x10', '"0x10"'],
      [true, 'true'],
      [null, 'null'],
      [{}, 'an object'],
      [2 ** 53, '9007199254740992 \\(not a safe integer: pass a bigint or a decimal string\\)'],
      [2n ** 63n, '9223372036854775808n \\(outside the int64 range\\)'],
      [-(2n ** 63n) - 1n, '-9223372036854775809n \\(outside the int64 range\\)'],
      ['9223372036854775808', '"9223372036854775808" \\(outside the int64 range\\)'],
      ['-99999999999999999999', '"-99999999999999999999" \\(outside the int64 range\\)'],
      ['123456789012345678901', '"123456789012345678901"$'],
    ];
    for (const [value, got] of cases) {
      throwsBody(
        () => encodeAny(4, { ...im, receiver: value }),
        new RegExp(`^encodeBody\\(4\\): field "receiver" ${int64} ${got}`),
        4,
        'receiver',
      );
      throwsBody(
        () => encodeAny(25, { ...customer, storeId: value }),
        new RegExp(`^encodeBody\\(25\\): field "storeId" ${int64} ${got}`),
        25,
        'storeId',
      );
    }
  });

  it('a mistyped or out-of-range int32 field', () => {
    const int32 = 'must be an int32 \\(an integer from -2147483648 to 2147483647\\), got';
    const cases: [unknown, string][] = [
      ['5', '"5"$'],
      [5n, '5n$'],
      [1.25, '1\\.25$'],
      [2 ** 31, '2147483648 \\(outside the int32 range\\)'],
      [-(2 ** 31) - 1, '-2147483649 \\(outside the int32 range\\)'],
      [Infinity, 'Infinity$'],
    ];
    for (const [value, got] of cases) {
      throwsBody(
        () => encodeAny(8, { ...im, msgid: value }),
        new RegExp(`^encodeBody\\(8\\): field "msgid" ${int32} ${got}`),
        8,
        'msgid',
      );
      throwsBody(
        () => encodeAny(24, { ...customer, timestamp: value }),
        new RegExp(`^encodeBody\\(24\\): field "timestamp" ${int32} ${got}`),
        24,
        'timestamp',
      );
    }
  });

  it('mistyped or non-UTF-8 content and text', () => {
    const text = 'must be a string or Buffer \\(UTF-8 text\\), got';
    throwsBody(
      () => encodeAny(4, { ...im, content: 5 }),
      new RegExp(`^encodeBody\\(4\\): field "content" ${text} 5$`),
      4,
      'content',
    );
    throwsBody(
      () => encodeAny(24, { ...customer, content: ['a'] }),
      new RegExp(`^encodeBody\\(24\\): field "content" ${text} an array$`),
      24,
      'content',
    );
    throwsBody(
      () => encodeAny(21, { text: Buffer.from([0x61, 0xff]) }),
      new RegExp(`^encodeBody\\(21\\): field "text" ${text} a Buffer of 2 bytes \\(not valid UTF-8\\)$`),
      21,
      'text',
    );
    throwsBody(
      () => encodeAny(36, { text: 'a\uD800b' }),
      new RegExp(
        `^encodeBody\\(36\\): field "text" ${text} "a\\\\ud800b" \\(not well-formed Unicode: a lone surrogate\\)$`,
      ),
      36,
      'text',
    );
  });

  it('an unknown field (a typo or another layout’s field)', () => {
    throwsBody(
      () => encodeAny(4, { ...im, text: 'x' }),
      /^encodeBody\(4\): unknown field "text" \(the fields are sender, receiver, timestamp, msgid, content\)$/,
      4,
      'text',
    );
    throwsBody(
      () => encodeAny(7, { text: 'x', content: 'y' }),
      /^encodeBody\(7\): unknown field "content" \(the fields are text\)$/,
      7,
      'content',
    );
  });

  it('a body over the 32767-byte limit, naming the content field', () => {
    throwsBody(
      () => encodeAny(4, { ...im, content: 'x'.repeat(MAX_BODY_SIZE - 24 + 1) }),
      /^encodeBody\(4\): field "content" is too long: the body would be 32768 bytes; ims stores at most 32767$/,
      4,
      'content',
    );
    throwsBody(
      () => encodeAny(21, { text: Buffer.alloc(MAX_BODY_SIZE + 1, 0x61) }),
      /^encodeBody\(21\): field "text" is too long: the body would be 32768 bytes/,
      21,
      'text',
    );
  });
});

describe('decodeBody errors name the cmd', () => {
  it('an unknown cmd', () => {
    throwsBody(
      () => decodeBody(250, Buffer.alloc(48)),
      /^decodeBody\(250\): cmd 250 is not a message kind ims stores/,
      250,
    );
  });

  it('a body shorter than its layout', () => {
    throwsBody(
      () => decodeBody(4, Buffer.alloc(23)),
      /^decodeBody\(4\): body of 23 bytes is too short: expected an IMMessage \(sender, receiver, timestamp, msgid: 24 bytes, then content\)$/,
      4,
    );
    throwsBody(() => decodeBody(8, Buffer.alloc(0)), /^decodeBody\(8\): body of 0 bytes is too short/, 8);
    throwsBody(
      () => decodeBody(25, Buffer.alloc(35)),
      /^decodeBody\(25\): body of 35 bytes is too short: expected a CustomerMessage/,
      25,
    );
  });

  it('content or text that is not valid UTF-8', () => {
    const im = encodeBody(4, { sender: 1, receiver: 2, timestamp: 3, msgid: 4, content: 'ok' });
    throwsBody(
      () => decodeBody(4, Buffer.concat([im, Buffer.from([0xc3])])),
      /^decodeBody\(4\): field "content" is not valid UTF-8 \(3 bytes\)$/,
      4,
      'content',
    );
    throwsBody(
      () => decodeBody(7, Buffer.from([0xed, 0xa0, 0x80])),
      /^decodeBody\(7\): field "text" is not valid UTF-8/,
      7,
      'text',
    );
  });

  it('a raw that is not bytes', () => {
    throwsBody(
      () => decodeBody(4, 'AAAA' as unknown as Buffer),
      /^decodeBody\(4\): raw must be a Buffer, got "AAAA"$/,
      4,
    );
  });
});

describe('body types', () => {
  it('a literal cmd selects its fields; a number cmd gives the union', () => {
    const raw = encodeBody(MessageCmd.IM, {
      sender: 1n,
      receiver: 2,
      timestamp: 0,
      msgid: 0,
      content: 'typed',
    });
    // Compile-time checks (the build fails if the typing regresses); the calls run too.
    const sender: bigint = decodeBody(4, raw).sender;
    const content: string = decodeBody(MessageCmd.IM, raw).content;
    // @ts-expect-error -- an IM body has no `text`
    assert.equal(decodeBody(4, raw).text, undefined);
    // @ts-expect-error -- a customer field on an IM body
    assert.equal(decodeBody(8, raw).sellerId, undefined);
    const anyCmd: number = 4;
    const union: BodyFields = decodeBody(anyCmd, raw);
    assert.ok('sender' in union && union.sender === sender);
    assert.equal(content, 'typed');
    // @ts-expect-error -- text fields for an IM cmd
    assert.throws(() => encodeBody(4, { text: 'x' }), ImsBodyError);
    // @ts-expect-error -- cmd 5 is not stored, so no fields fit it
    assert.throws(() => encodeBody(5, { text: 'x' }), ImsBodyError);
    assert.throws(
      () =>
        encodeBody(4, {
          sender: 1,
          receiver: 2,
          // @ts-expect-error -- int32 fields take numbers only
          timestamp: '0',
          msgid: 0,
          content: '',
        }),
      ImsBodyError,
    );
  });
});
