import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  GoBasic,
  GobError,
  GobStreamDecoder,
  GobStreamEncoder,
  SKIPPED,
  type Decoded,
  type GobValue,
  type LocalType,
} from '../../../src/rpc/gob/gob.js';
import { goSlice, goStruct } from '../../../src/rpc/gob/go-structs.js';
import {
  DispatcherResponse,
  GORPC_METHODS,
  REPLY_NAMES,
  REQUEST_NAMES,
  WIRE_REQUEST_LOCAL,
  WireResponse,
  toGorpcCall,
  toPayload,
} from '../../../src/rpc/gorpc/go-types.js';
import { encodeCall, REQUEST_NAME_OF } from '../../../src/rpc/gorpc/gorpc-client.js';
import { asRecorded, callBoundaries, inflateFlushed, loadCaptures, type CapturedCall } from './support.js';

const captures = loadCaptures();

const decodeAll = (bytes: Buffer, names: ReadonlySet<string>): GobValue[] => {
  const d = new GobStreamDecoder({ maxMessage: 1 << 20, names });
  d.push(bytes);
  const out: GobValue[] = [];
  for (let v = d.next(); v !== undefined; v = d.next()) out.push(v);
  assert.equal(d.bufferedBytes, 0, 'every byte belongs to a value');
  return out;
};

/** Every call in a client stream, decoded as the server decodes it (into gorpc's wireRequest). */
const decodeCalls = (bytes: Buffer): Decoded[] => {
  const d = new GobStreamDecoder({ maxMessage: 1 << 20, names: REQUEST_NAMES });
  d.push(bytes);
  const out: Decoded[] = [];
  for (let v = d.nextAs(() => WIRE_REQUEST_LOCAL); v !== undefined; v = d.nextAs(() => WIRE_REQUEST_LOCAL))
    out.push(v as Decoded);
  assert.equal(d.bufferedBytes, 0, 'every byte belongs to a value');
  return out;
};

/** The Go request struct of a recorded call, as the client encoder takes it. */
const goRequest = (c: CapturedCall): Record<string, unknown> =>
  Object.fromEntries(
    Object.entries(c.req).map(([k, v]) => [k, k === 'Raw' ? Buffer.from(String(v), 'base64') : v]),
  );

/** The reply a Nest handler gives for a recorded Go answer. */
function nestReply(c: CapturedCall): unknown {
  const wire = (ms: { MsgID: number; DeviceID: number; Cmd: number; Raw: string }[]) =>
    ms.map((m) => ({ msgId: m.MsgID, deviceId: m.DeviceID, cmd: m.Cmd, raw: m.Raw }));
  const r = c.resp;
  if (typeof r === 'number') return { msgId: r, prevMsgId: 0, count: r };
  if (Array.isArray(r)) return { messages: wire(r) };
  return { messages: wire(r.Messages), lastMsgId: r.LastMsgID, hasMore: false };
}

for (const capture of captures) {
  const clientGob =
    capture.mode === 'plain' ? capture.c2s.subarray(1) : inflateFlushed(capture.c2s.subarray(1));
  const serverGob = capture.mode === 'plain' ? capture.s2c : inflateFlushed(capture.s2c);

  describe(`gob codec against Go's ${capture.mode} capture`, () => {
    it('handshake byte says whether the stream is compressed', () => {
      assert.equal(capture.c2s[0], capture.mode === 'plain' ? 0 : 1);
    });

    it("decodes the client's calls: ids 1..9, Go's call names and request structs", () => {
      const calls = decodeCalls(clientGob).map(toGorpcCall);
      assert.deepEqual(
        calls.map((c) => [c.id, c.name]),
        capture.calls.map((c, i) => [i + 1, `.${c.method}`]),
      );
      calls.forEach((call, i) => {
        const method = GORPC_METHODS.get(capture.calls[i].method)!;
        assert.equal(call.request?.name, REQUEST_NAME_OF[method.pattern]);
        const payload = toPayload(method, call.request!.value);
        const req = capture.calls[i].req;
        for (const [goField, key] of Object.entries(method.request.payloadKeys))
          assert.equal(payload[key], req[goField], `${method.pattern}.${goField}`);
      });
    });

    it("decodes the server's replies to what calls.json records", () => {
      const replies = decodeAll(serverGob, REPLY_NAMES);
      assert.equal(replies.length, capture.calls.length);
      replies.forEach((r, i) => {
        const inner = (r as { fields: Map<string, GobValue> }).fields.get('Response') as {
          name: string;
          value: { fields: Map<string, GobValue> };
        };
        assert.equal(inner.name, '*gorpc.dispatcherResponse');
        const resp = inner.value.fields.get('Response') as { value: GobValue };
        assert.deepEqual(asRecorded(resp.value), capture.calls[i].resp, `reply ${i + 1}`);
      });
    });

    it("encodes Go's answers to the server's bytes exactly (one encoder for the connection)", () => {
      const enc = new GobStreamEncoder();
      const bytes = Buffer.concat(
        capture.calls.map((c, i) =>
          enc.encode(WireResponse, {
            ID: i + 1,
            Response: {
              name: '*gorpc.dispatcherResponse',
              type: DispatcherResponse,
              value: { Response: GORPC_METHODS.get(c.method)!.reply(nestReply(c)) },
            },
          }),
        ),
      );
      assert.equal(bytes.toString('hex'), serverGob.toString('hex'));
    });

    it("the Node client encodes the same calls to the Go client's bytes exactly", () => {
      const enc = new GobStreamEncoder();
      const bytes = Buffer.concat(
        capture.calls.map((c, i) =>
          encodeCall(enc, i + 1, c.method, REQUEST_NAME_OF[c.method], goRequest(c)),
        ),
      );
      assert.equal(bytes.toString('hex'), clientGob.toString('hex'));
    });
  });
}

describe('gob stream decoder', () => {
  const plain = captures.find((c) => c.mode === 'plain')!;
  const stream = plain.c2s.subarray(1);

  it('reads values fed one byte at a time, each as soon as its last byte arrives', () => {
    const cuts = callBoundaries(stream);
    const d = new GobStreamDecoder({ maxMessage: 1 << 20, names: REQUEST_NAMES });
    const doneAt: number[] = [];
    for (let i = 0; i < stream.length; i++) {
      d.push(stream.subarray(i, i + 1));
      for (let v = d.next(); v !== undefined; v = d.next()) doneAt.push(i + 1);
    }
    assert.deepEqual(doneAt, cuts.slice(1));
  });

  const first = stream.subarray(0, callBoundaries(stream)[1]);
  const bad: [string, Buffer, RegExp][] = [
    ['a zero-length message', Buffer.from([0]), /empty gob message/],
    ['a length over the limit', Buffer.from([0xfc, 0x01, 0x00, 0x00, 0x00]), /exceeds the limit/],
    ['an unsigned integer longer than 8 bytes', Buffer.from([0x02, 0xf0, 0x01]), /invalid unsigned integer/],
    ['a value of an undefined type', Buffer.from([0x02, 0xff, 0x82]), /unknown gob type id 65/],
    ['a definition of a reserved id', Buffer.from([0x03, 0x03, 0x03, 0x00]), /reserved id/],
    [
      'an unregistered interface type name',
      Buffer.from(first.toString('latin1').replace('*main.PeerMessage', '*main.PeerMessagX'), 'latin1'),
      /unknown type name "\*main.PeerMessagX"/,
    ],
    [
      'a message shorter than its value',
      Buffer.concat([Buffer.from([first[0] - 1]), first.subarray(1, first[0]), first.subarray(first[0] + 1)]),
      /runs past|extra data|unknown gob type/,
    ],
    [
      'a message longer than its value',
      Buffer.concat([
        Buffer.from([first[0] + 1]),
        first.subarray(1, first[0] + 1),
        Buffer.from([0]),
        first.subarray(first[0] + 1),
      ]),
      /extra data after a type definition/,
    ],
  ];
  for (const [what, bytes, message] of bad) {
    it(`refuses ${what}`, () => {
      const d = new GobStreamDecoder({ maxMessage: 4096, names: REQUEST_NAMES });
      d.push(bytes);
      assert.throws(
        () => {
          while (d.next() !== undefined);
        },
        (err: unknown) => err instanceof GobError && message.test(err.message),
      );
    });
  }

  it('waits, without error, for a message that has not fully arrived', () => {
    const d = new GobStreamDecoder({ maxMessage: 4096, names: REQUEST_NAMES });
    d.push(first.subarray(0, first.length - 1));
    assert.equal(d.next(), undefined);
    d.push(first.subarray(first.length - 1));
    assert.ok(d.next() !== undefined);
  });
});

describe('type-directed decoding', () => {
  const Empty = goStruct(90, 'Empty', []);
  const PM = goStruct(91, 'PeerMessage', [
    ['AppID', GoBasic.int],
    ['Extra', goSlice(92, '[]Empty', Empty)],
    ['Uid', GoBasic.int],
  ]);
  const Local: LocalType = {
    kind: 'struct',
    name: 'PeerMessage',
    fields: new Map<string, LocalType>([
      ['AppID', { kind: 'int' }],
      ['Uid', { kind: 'int' }],
    ]),
  };
  const decodeOne = (bytes: Buffer, maxElements?: number) => {
    const d = new GobStreamDecoder({
      maxMessage: 1 << 20,
      names: new Set(),
      ...(maxElements ? { maxElements } : {}),
    });
    d.push(bytes);
    return d.nextAs(() => Local);
  };

  it('fills the fields it knows, skips the ones it does not, and leaves out what was not sent', () => {
    const bytes = new GobStreamEncoder().encode(PM, { AppID: 7, Extra: [{}, {}, {}], Uid: -(2n ** 60n) });
    assert.deepEqual(decodeOne(bytes), { AppID: 7, Uid: -(2n ** 60n) });
    assert.deepEqual(decodeOne(new GobStreamEncoder().encode(PM, {})), {});
  });

  it('refuses more list elements than the cap, skipped ones included, before reading them', () => {
    const bytes = new GobStreamEncoder().encode(PM, { AppID: 1, Extra: new Array(100).fill({}) });
    assert.deepEqual(decodeOne(bytes, 100), { AppID: 1 });
    assert.throws(
      () => decodeOne(bytes, 99),
      (e: unknown) => e instanceof GobError && /more than 99 list elements in one value/.test(e.message),
    );
  });

  it('refuses a count the bytes left cannot hold at the element size of its type', () => {
    // An array of 1000 ints is at least 1001 bytes: 3 such arrays cannot fit in a message of ~50 bytes.
    const Ints = { kind: 'array', id: 93, name: '[1000]int', elem: GoBasic.int, len: 1000 } as const;
    const Arrs = goSlice(94, '[][1000]int', Ints);
    const T = goStruct(95, 'PeerMessage', [
      ['AppID', GoBasic.int],
      ['Junk', Arrs],
    ]);
    const ok = new GobStreamEncoder().encode(T, { AppID: 1, Junk: [] });
    // Patch the value: Junk (delta 1) with a count of 3 and nothing after it.
    const value = Buffer.from([0xff, 0xbe, 0x01, 0x02, 0x01, 0x03, 0x00]);
    const prefix = ok.subarray(0, ok.lastIndexOf(Buffer.from([0xff, 0xbe, 0x01, 0x02])) - 1);
    const bytes = Buffer.concat([prefix, Buffer.from([value.length]), value]);
    assert.throws(
      () => decodeOne(bytes),
      (e: unknown) => e instanceof GobError && /list of 3 elements runs past its gob message/.test(e.message),
    );
  });

  it("refuses a field of a type the local one cannot take, in Go's words", () => {
    const Bad = goStruct(96, 'PeerMessage', [['Uid', GoBasic.string]]);
    assert.throws(
      () => decodeOne(new GobStreamEncoder().encode(Bad, {})),
      (e: unknown) =>
        e instanceof GobError && /wrong type \(int64\) for received field PeerMessage\.Uid/.test(e.message),
    );
    const Other = goStruct(97, 'Other', [['Name', GoBasic.string]]);
    assert.throws(
      () => decodeOne(new GobStreamEncoder().encode(Other, { Name: 'x' })),
      (e: unknown) =>
        e instanceof GobError && /no fields matched compiling decoder for PeerMessage/.test(e.message),
    );
    assert.throws(
      () => decodeOne(new GobStreamEncoder().encode(GoBasic.string, 'x')),
      (e: unknown) =>
        e instanceof GobError &&
        /a PeerMessage cannot be decoded from a value sent as string/.test(e.message),
    );
  });

  it('a value its plan drops is read to its end and reported as SKIPPED', () => {
    const d = new GobStreamDecoder({ maxMessage: 1 << 20, names: new Set() });
    const enc = new GobStreamEncoder();
    d.push(Buffer.concat([enc.encode(PM, { AppID: 1, Extra: [{}] }), enc.encode(PM, { AppID: 2 })]));
    assert.equal(
      d.nextAs(() => null),
      SKIPPED,
    );
    assert.deepEqual(
      d.nextAs(() => Local),
      { AppID: 2 },
    );
    assert.equal(d.bufferedBytes, 0);
  });
});

describe('gob integers', () => {
  const edges = [
    0,
    1,
    63,
    64,
    127,
    128,
    255,
    256,
    65535,
    2 ** 31,
    2 ** 32 + 5,
    2 ** 52 - 1,
    2 ** 52,
    2 ** 53 - 1,
  ];
  it('numbers encode to the bytes their bigints do, and decode back as numbers when safe', () => {
    for (const [type, values] of [
      [GoBasic.int, [...edges, ...edges.map((v) => -v)]],
      [GoBasic.uint, edges],
    ] as const) {
      for (const v of values) {
        const fromNumber = new GobStreamEncoder().encode(type, v);
        const fromBig = new GobStreamEncoder().encode(type, BigInt(v));
        assert.equal(fromNumber.toString('hex'), fromBig.toString('hex'), `${type.kind} ${v}`);
        const d = new GobStreamDecoder({ maxMessage: 1 << 20, names: new Set() });
        d.push(fromNumber);
        assert.equal(
          d.nextAs(() => ({ kind: type.kind })),
          v === 0 ? 0 : v,
          `${type.kind} ${v} back`,
        );
      }
    }
  });
});
