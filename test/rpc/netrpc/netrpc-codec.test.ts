import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  GoBasic,
  GobStreamDecoder,
  GobStreamEncoder,
  GobStruct,
  SKIPPED,
  type Decoded,
  type GoType,
} from '../../../src/rpc/gob/gob.js';
import { goStruct } from '../../../src/rpc/gob/go-structs.js';
import { CONNECTED, readConnectRequest } from '../../../src/rpc/netrpc/http-connect.js';
import { CONNECT_REQUEST, encodeCall } from '../../../src/rpc/netrpc/netrpc-client.js';
import {
  InvalidRequest,
  NETRPC_METHODS,
  REQUEST_HEADER_LOCAL,
  Response,
  argLocal,
  argPayload,
  argType,
  argTypeError,
  argValueError,
  headerTypeError,
  lookupMethod,
  toRequestHeader,
  type NetrpcMethod,
} from '../../../src/rpc/netrpc/netrpc-types.js';
import {
  asRecorded,
  callPieces,
  decodeAll,
  goArg,
  loadWire,
  type GoId,
  type GoMessage,
  type WireCall,
} from './support.js';

const wire = loadWire();
const method = (name: string): NetrpcMethod => NETRPC_METHODS.get(name)!;

/** A fresh server-side decoder holding `gob`, and its type definitions. */
const serverDecoder = (gob: Buffer) => {
  const d = new GobStreamDecoder({ maxMessage: 1 << 20, names: new Set() });
  d.push(gob);
  return { d, defs: (id: number) => d.typeDef(id) };
};

/** Reads the next header as the server does: its value, or Go's reason for refusing it. */
const readHeader = (d: GobStreamDecoder, defs: (id: number) => ReturnType<GobStreamDecoder['typeDef']>) => {
  let refusal: string | null = null;
  const v = d.nextAs((id) => {
    refusal = headerTypeError(id, defs);
    return refusal ? null : REQUEST_HEADER_LOCAL;
  });
  return v === SKIPPED ? refusal! : toRequestHeader(v as Decoded);
};

/** Reads the next argument of `m` as the server does: the decoded value, or Go's reason for refusing it. */
const readArg = (
  d: GobStreamDecoder,
  defs: (id: number) => ReturnType<GobStreamDecoder['typeDef']>,
  m: NetrpcMethod,
): { refusal: string } | { value: Decoded } => {
  let refusal: string | null = null;
  const v = d.nextAs((id) => {
    refusal = argTypeError(m, id, defs);
    return refusal ? null : argLocal(m);
  });
  if (v === SKIPPED) return { refusal: refusal! };
  const valueError = argValueError(m, v as Decoded);
  return valueError ? { refusal: valueError } : { value: v as Decoded };
};

/** The reply a Nest handler gives for a recorded Go answer (what the transport turns back into Go's). */
function nestReply(c: WireCall): unknown {
  const messages = (ms: GoMessage[]) =>
    ms.map((m) => ({ msgId: m.MsgID, deviceId: m.DeviceID, cmd: m.Cmd, raw: m.Raw }));
  const ids = (r: GoId) => ({ msgId: r.MsgID, prevMsgId: r.PrevMsgID });
  const r = c.resp as Record<string, unknown>;
  switch (c.method) {
    case 'SavePeerMessage':
    case 'SaveGroupMessage':
      return ids(c.resp as GoId);
    case 'SavePeerGroupMessage':
      return { messageIds: (r.MessageIDs as GoId[]).map(ids) };
    case 'SyncMessage':
    case 'SyncGroupMessage':
      return { messages: messages(r.Messages as GoMessage[]), lastMsgId: r.LastMsgID, hasMore: r.HasMore };
    case 'GetLatestMessage':
      return { messages: messages(r.Messages as GoMessage[]) };
    case 'GetNewCount':
      return { count: c.resp };
    default:
      return { pong: true };
  }
}

describe("net/rpc codec against Go's capture (go-ims-newest wire/)", () => {
  it('the capture is the eight methods, one call each', () => {
    assert.deepEqual(
      wire.calls.map((c) => c.method),
      [
        'SavePeerMessage',
        'SavePeerGroupMessage',
        'SaveGroupMessage',
        'SyncMessage',
        'SyncGroupMessage',
        'GetNewCount',
        'GetLatestMessage',
        'Ping',
      ],
    );
    assert.deepEqual([...NETRPC_METHODS.keys()].sort(), wire.calls.map((c) => c.method).sort());
  });

  it("accepts the client's CONNECT; the server's first bytes are Go's 200 line", () => {
    const r = readConnectRequest(wire.c2s, 4096);
    assert.equal(r.kind, 'connected');
    assert.ok(r.kind === 'connected' && r.rest.equals(wire.clientGob));
    assert.ok(wire.s2c.subarray(0, CONNECTED.length).equals(CONNECTED));
  });

  it("decodes the client's calls: Request headers (Seq 0..7) and arguments as calls.json records them", () => {
    const { d, defs } = serverDecoder(wire.clientGob);
    wire.calls.forEach((c, i) => {
      const header = readHeader(d, defs);
      assert.deepEqual(header, { serviceMethod: `RPCStorage.${c.method}`, seq: i });
      const m = lookupMethod((header as { serviceMethod: string }).serviceMethod);
      assert.equal(typeof m === 'string' ? m : m.pattern, c.method);
      const arg = readArg(d, defs, method(c.method));
      assert.ok('value' in arg, `${c.method}: ${JSON.stringify(arg)}`);
      if (method(c.method).arg.kind === 'int') {
        assert.equal(arg.value, c.req);
        return;
      }
      const payload = argPayload(method(c.method), arg.value);
      const spec = method(c.method).arg as { request: { payloadKeys: Record<string, string> } };
      for (const [goField, key] of Object.entries(spec.request.payloadKeys))
        assert.deepEqual(payload[key], (c.req as Record<string, unknown>)[goField], `${c.method}.${goField}`);
    });
    assert.equal(d.bufferedBytes, 0);
  });

  it("decodes the server's answers: Response headers echo method and Seq, bodies are calls.json's", () => {
    const { values } = decodeAll(wire.serverGob);
    assert.equal(values.length, 2 * wire.calls.length);
    wire.calls.forEach((c, i) => {
      const header = values[2 * i] as GobStruct;
      assert.equal(header.typeName, 'Response');
      assert.equal(header.fields.get('ServiceMethod'), `RPCStorage.${c.method}`);
      assert.equal(header.fields.get('Seq') ?? 0n, BigInt(i));
      assert.equal(header.fields.get('Error'), undefined);
      assert.deepEqual(asRecorded(c.method, values[2 * i + 1]), c.resp, c.method);
    });
  });

  it("encodes Go's answers to the server's bytes exactly (one encoder for the connection)", () => {
    const enc = new GobStreamEncoder();
    const bytes = Buffer.concat(
      wire.calls.flatMap((c, i) => {
        const reply = method(c.method).reply(nestReply(c));
        return [
          enc.encode(Response, { ServiceMethod: `RPCStorage.${c.method}`, Seq: i }),
          enc.encode(reply.type, reply.value),
        ];
      }),
    );
    assert.equal(bytes.toString('hex'), wire.serverGob.toString('hex'));
  });

  it("the Node client encodes the same calls to the Go client's bytes exactly", () => {
    const enc = new GobStreamEncoder();
    const bytes = Buffer.concat([
      CONNECT_REQUEST,
      ...wire.calls.map((c, i) =>
        encodeCall(enc, i, `RPCStorage.${c.method}`, argType(method(c.method)), goArg(c)),
      ),
    ]);
    assert.equal(bytes.toString('hex'), wire.c2s.toString('hex'));
  });

  it('cuts into one piece per call on both sides', () => {
    assert.equal(callPieces(wire.clientGob).length, 8);
    assert.equal(callPieces(wire.serverGob).length, 8);
    assert.equal(Buffer.concat(callPieces(wire.serverGob)).length, wire.serverGob.length);
  });
});

describe("Go's net/rpc error strings", () => {
  it('unknown service, unknown method, a name without a dot', () => {
    assert.equal(lookupMethod('Storage.SyncMessage'), "rpc: can't find service Storage.SyncMessage");
    assert.equal(lookupMethod('RPCStorage.DropAll'), "rpc: can't find method RPCStorage.DropAll");
    assert.equal(lookupMethod('SyncMessage'), 'rpc: service/method request ill-formed: SyncMessage');
    // Go splits at the last dot.
    assert.equal(lookupMethod('RPCStorage.X.Ping'), "rpc: can't find service RPCStorage.X.Ping");
    assert.equal(lookupMethod('RPCStorage.'), "rpc: can't find method RPCStorage.");
  });

  /** Encodes one value as a fresh stream and checks it against `m`'s argument as Go's decoder would. */
  const check = (m: string, type: GoType, value: unknown) => {
    const { d, defs } = serverDecoder(new GobStreamEncoder().encode(type, value));
    const arg = readArg(d, defs, method(m));
    assert.equal(d.bufferedBytes, 0, 'a refused argument is still read to its end');
    return 'refusal' in arg ? arg.refusal : null;
  };
  const peerMessage = argType(method('SavePeerMessage'));

  it('an argument of the wrong shape gets the gob error Go sends back', () => {
    assert.equal(
      check('SavePeerMessage', GoBasic.int, 5),
      'gob: type mismatch in decoder: want struct type storage.PeerMessage; got non-struct',
    );
    assert.equal(
      check('SavePeerMessage', goStruct(90, 'Other', [['Name', GoBasic.string]]), { Name: 'x' }),
      'gob: type mismatch: no fields matched compiling decoder for PeerMessage',
    );
    assert.equal(
      check('SavePeerMessage', goStruct(90, 'PeerMessage', [['AppID', GoBasic.string]]), {}),
      'gob: wrong type (int64) for received field PeerMessage.AppID',
      'by the type definition, even when the value leaves the field out',
    );
    assert.equal(
      check('SavePeerMessage', goStruct(90, 'PM', [['Raw', GoBasic.string]]), { Raw: 'x' }),
      'gob: wrong type ([]uint8) for received field PM.Raw',
    );
    assert.equal(
      check(
        'SavePeerGroupMessage',
        goStruct(90, 'PGM', [['Members', { kind: 'slice', id: 91, name: '[]uint64', elem: GoBasic.uint }]]),
        {
          Members: [1],
        },
      ),
      'gob: wrong type ([]int64) for received field PGM.Members',
    );
    assert.equal(
      check('SavePeerMessage', peerMessage, { AppID: 1, Cmd: 2n ** 31n, Raw: Buffer.from('x') }),
      'value for "Cmd" out of range',
    );
    assert.equal(
      check('Ping', peerMessage, { AppID: 1 }),
      'gob: decoding into local type *int, received remote type PeerMessage',
    );
    assert.equal(
      check('Ping', GoBasic.string, 'x'),
      'gob: decoding into local type *int, received remote type string',
    );
  });

  it('what Go decodes without complaint: extra fields, missing fields, an empty struct', () => {
    const wider = goStruct(90, 'PeerMessageV2', [
      ['AppID', GoBasic.int],
      ['Uid', GoBasic.int],
      ['Flags', GoBasic.string],
    ]);
    assert.equal(check('SavePeerMessage', wider, { AppID: 1, Uid: 2, Flags: 'x' }), null);
    assert.equal(check('SyncMessage', goStruct(90, 'Empty', []), {}), null);
    assert.equal(check('Ping', GoBasic.int, -3), null);
  });

  it('a header Go cannot decode is reported for the connection to close', () => {
    const { d, defs } = serverDecoder(
      new GobStreamEncoder().encode(goStruct(65, 'Request', [['Seq', GoBasic.int]]), { Seq: 1 }),
    );
    assert.equal(
      readHeader(d, defs),
      'rpc: server cannot decode request: gob: wrong type (uint64) for received field Request.Seq',
    );
  });

  it("an error answer: the header carries the error, the body is Go's struct{}{} (defined once per stream)", () => {
    const enc = new GobStreamEncoder();
    const header = enc.encode(Response, { ServiceMethod: 'RPCStorage.X', Seq: 3, Error: 'rpc: boom' });
    const first = enc.encode(InvalidRequest, {});
    const again = enc.encode(InvalidRequest, {});
    // -74 (the definition): StructT{CommonType{Id: 74}} with no name and no fields; then the value: 74, end.
    assert.equal(first.toString('hex'), '0aff930301' + '02ff94' + '000000' + '03ff9400');
    assert.equal(again.toString('hex'), '03ff9400');
    const { values } = decodeAll(Buffer.concat([header, first, again]));
    const h = values[0] as GobStruct;
    assert.deepEqual(
      [h.fields.get('ServiceMethod'), h.fields.get('Seq'), h.fields.get('Error')],
      ['RPCStorage.X', 3n, 'rpc: boom'],
    );
    assert.ok(values[1] instanceof GobStruct && values[1].fields.size === 0);
  });
});

describe('the HTTP handshake', () => {
  const text = (s: string) => Buffer.from(s, 'latin1');
  it('waits for the end of the head, accepts CRLF as well, and hands on what follows it', () => {
    assert.equal(readConnectRequest(text('CONNECT /_goRPC_ HTTP/1.0\n'), 4096).kind, 'incomplete');
    const r = readConnectRequest(text('CONNECT /_goRPC_ HTTP/1.1\r\nHost: ims\r\n\r\nGOB'), 4096);
    assert.ok(r.kind === 'connected' && r.rest.toString() === 'GOB');
  });

  const refused = (head: string) => {
    const r = readConnectRequest(text(head), 4096);
    assert.equal(r.kind, 'refused', head);
    return r.kind === 'refused' ? r : assert.fail();
  };

  it("another method on the RPC path: Go's 405 must CONNECT", () => {
    const r = refused('GET /_goRPC_ HTTP/1.0\n\n');
    const s = r.response.toString('latin1');
    assert.match(s, /^HTTP\/1\.0 405 Method Not Allowed\r\n/);
    assert.ok(s.endsWith('\r\n\r\n405 must CONNECT\n'));
    assert.match(r.reason, /"GET \/_goRPC_ HTTP\/1\.0" is not a CONNECT; answered 405/);
  });

  it('another path: 404 page not found; not HTTP: 400; a head that never ends: 431', () => {
    assert.ok(
      refused('CONNECT /debug/rpc HTTP/1.0\n\n').response.toString().endsWith('404 page not found\n'),
    );
    assert.match(refused('\u0000\u0007garbage\n\n').response.toString(), /^HTTP\/1\.1 400 Bad Request\r\n/);
    assert.match(
      refused('CONNECT /_goRPC_ HTTP/1.1\n\n').response.toString(),
      /400 Bad Request: missing required Host header$/,
    );
    const long = readConnectRequest(Buffer.alloc(5000, 0x41), 4096);
    assert.ok(long.kind === 'refused' && /^HTTP\/1\.1 431 /.test(long.response.toString()));
  });
});
