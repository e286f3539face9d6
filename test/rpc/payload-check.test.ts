import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Type } from '@nestjs/common';
import { Cmd } from '../../src/format/constants.js';
import { compilePayloadCheck } from '../../src/rpc/payload-check.js';
import { RpcValidationPipe } from '../../src/rpc/rpc-validation.pipe.js';
import {
  GetLatestMessageRequest,
  GetNewCountRequest,
  SaveGroupMessageRequest,
  SavePeerGroupMessageRequest,
  SavePeerMessageRequest,
  SavePeerMessagesRequest,
  SyncGroupMessageRequest,
  SyncMessageRequest,
} from '../../src/rpc/rpc.dto.js';
import { imBody } from '../support/rpc-client.js';

const b64 = (b: Buffer) => b.toString('base64');

/** A valid payload of each DTO. */
const VALID: [Type, Record<string, unknown>][] = [
  [SavePeerMessageRequest, { appId: 7, uid: '12', deviceId: 1, cmd: Cmd.IM, raw: b64(imBody(1, 2, 'hi')) }],
  [
    SaveGroupMessageRequest,
    { appId: 7, groupId: 9, deviceId: 0, cmd: Cmd.GROUP_IM, raw: b64(imBody(1, 9, 'hi')) },
  ],
  [
    SavePeerGroupMessageRequest,
    { appId: 7, members: [1, '2'], deviceId: 1, cmd: Cmd.GROUP_IM, raw: b64(imBody(1, 9, 'x')) },
  ],
  [SavePeerMessagesRequest, { messages: [{}, 1] }],
  [SyncMessageRequest, { appId: 7, uid: 1, deviceId: 1, lastMsgId: '0' }],
  [SyncGroupMessageRequest, { appId: 7, uid: 1, deviceId: 1, groupId: 3, lastMsgId: 0, timestamp: -5 }],
  [GetNewCountRequest, { appId: 7, uid: 1, deviceId: 1, lastMsgId: 99 }],
  [GetLatestMessageRequest, { appId: 7, uid: 1, limit: 3 }],
];

/** Values that break, or nearly break, some rule. */
const ODD_VALUES: unknown[] = [
  undefined,
  null,
  true,
  -1,
  0,
  1.5,
  2 ** 31,
  -(2 ** 31) - 1,
  2 ** 53,
  '',
  ' 1',
  '-0',
  '9223372036854775807',
  '9223372036854775808',
  'abc',
  'aGk=',
  'aGk',
  [],
  [1],
  Array.from({ length: 1001 }, () => 1),
  {},
  Cmd.ACK,
  Cmd.GROUP_IM,
  Cmd.SYSTEM,
  b64(Buffer.alloc(10)),
  b64(Buffer.alloc(40000)),
];

/** Deterministic pseudo-random numbers (the test must fail the same way twice). */
function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

async function classValidatorVerdict(
  pipe: RpcValidationPipe,
  dto: Type,
  value: object,
): Promise<{ ok: true; value: unknown } | { ok: false }> {
  try {
    // Straight to Nest's ValidationPipe (class-validator), skipping the fast path.
    const out = await Object.getPrototypeOf(RpcValidationPipe.prototype).transform.call(pipe, value, {
      type: 'body',
      metatype: dto,
    });
    return { ok: true, value: out };
  } catch {
    return { ok: false };
  }
}

describe('payload checks compiled from the DTO rules', () => {
  it('every DTO compiles (no DTO silently falls back to class-validator)', () => {
    for (const [dto] of VALID) assert.notEqual(compilePayloadCheck(dto), null, dto.name);
  });

  it('accept exactly what class-validator accepts, and return the same whitelisted object', async () => {
    const pipe = new RpcValidationPipe();
    const next = random(42);
    let accepted = 0;
    let refused = 0;
    for (const [dto, valid] of VALID) {
      const check = compilePayloadCheck(dto)!;
      const keys = Object.keys(valid);
      const variants: Record<string, unknown>[] = [valid, { ...valid, extra: 'dropped' }];
      for (const k of keys) {
        for (const v of ODD_VALUES) variants.push({ ...valid, [k]: v });
        const missing = { ...valid };
        delete missing[k];
        variants.push(missing);
      }
      for (let i = 0; i < 300; i++) {
        const mutated: Record<string, unknown> = { ...valid };
        for (const k of keys)
          if (next() < 0.3) mutated[k] = ODD_VALUES[Math.floor(next() * ODD_VALUES.length)];
        variants.push(mutated);
      }
      for (const payload of variants) {
        const fast = check(payload);
        const slow = await classValidatorVerdict(pipe, dto, structuredClone(payload));
        const label = `${dto.name} ${JSON.stringify(payload)?.slice(0, 160)}`;
        assert.equal(fast !== null, slow.ok, label);
        if (fast && slow.ok) {
          assert.deepEqual(fast, slow.value, label);
          accepted++;
        } else refused++;
      }
    }
    // The table exercises both verdicts plenty.
    assert.ok(accepted > 100 && refused > 1000, `${accepted} accepted, ${refused} refused`);
  });
});
