/**
 * Structure-aware mutation of captured conversations (issue 23). A conversation is cut into its units
 * (gob messages, Nest frames, sync frames) so that mutations can aim at what a decoder trusts: length
 * prefixes, counts, type ids, nesting, and the order and number of messages. fast-check generates the
 * mutation plans; applying a plan to a seed is a pure function, so a failing input is kept as bytes.
 */
import fc from 'fast-check';

/** How a byte stream is cut into units, and how a unit's length is rewritten. */
export type Framing = 'gob' | 'nest' | 'sync';

/** A gob unsigned integer. */
export function gobUint(v: number): Buffer {
  if (v < 0x80) return Buffer.from([v]);
  const bytes: number[] = [];
  for (let x = v; x > 0; x = Math.floor(x / 256)) bytes.unshift(x % 256);
  return Buffer.from([256 - bytes.length, ...bytes]);
}

/** A gob signed integer. */
const gobInt = (v: number): Buffer => gobUint(v < 0 ? -v * 2 - 1 : v * 2);

function readGobUint(b: Buffer, at: number): { value: number; size: number } | null {
  if (at >= b.length) return null;
  const first = b[at];
  if (first < 0x80) return { value: first, size: 1 };
  const n = 256 - first;
  if (n > 8 || at + 1 + n > b.length) return null;
  let v = 0;
  for (let i = 1; i <= n; i++) v = v * 256 + b[at + i];
  return { value: v, size: 1 + n };
}

/** Cuts a stream into its units; whatever does not parse ends up in a last unit as is. */
export function cut(stream: Buffer, framing: Framing): Buffer[] {
  const units: Buffer[] = [];
  let at = 0;
  while (at < stream.length) {
    let end = -1;
    if (framing === 'gob') {
      const len = readGobUint(stream, at);
      if (len) end = at + len.size + len.value;
    } else if (framing === 'sync') {
      if (at + 12 <= stream.length) end = at + 12 + Math.max(0, stream.readInt32BE(at));
    } else {
      const hash = stream.indexOf(0x23, at); // '#'
      const len = hash > at ? Number(stream.toString('latin1', at, hash)) : NaN;
      if (Number.isSafeInteger(len)) end = hash + 1 + len;
    }
    if (end <= at || end > stream.length) {
      units.push(stream.subarray(at));
      break;
    }
    units.push(stream.subarray(at, end));
    at = end;
  }
  return units;
}

/** A unit with its length prefix said to be `length`. */
function withLength(unit: Buffer, framing: Framing, length: number): Buffer {
  if (framing === 'sync') {
    const out = Buffer.from(unit);
    if (out.length >= 4) out.writeInt32BE(length | 0, 0);
    return out;
  }
  if (framing === 'nest') {
    const hash = unit.indexOf(0x23);
    return Buffer.concat([Buffer.from(`${length}#`), hash >= 0 ? unit.subarray(hash + 1) : unit]);
  }
  const len = readGobUint(unit, 0);
  return Buffer.concat([gobUint(length), len ? unit.subarray(len.size) : unit]);
}

/** The body of a gob unit and a function to rebuild the unit around a new body. */
function gobBody(unit: Buffer): Buffer {
  const len = readGobUint(unit, 0);
  return len ? unit.subarray(len.size) : unit;
}
const gobUnit = (body: Buffer) => Buffer.concat([gobUint(body.length), body]);

/** Big counts as each framing writes them. */
const HUGE = [4_000_000, 8_000_000, 2 ** 31 - 1, 2 ** 32, 2 ** 53 - 1, 1_000_000_000];

export type Mutation =
  | { op: 'flip'; unit: number; byte: number; bit: number }
  | { op: 'truncate'; fraction: number }
  | { op: 'length'; unit: number; delta: number; huge: boolean }
  | { op: 'count'; unit: number; pos: number; value: number }
  | { op: 'splice'; seed: number; from: number; to: number; at: number }
  | { op: 'dup'; unit: number; times: number }
  | { op: 'drop'; unit: number }
  | { op: 'typeid'; unit: number; id: number }
  | { op: 'deep'; depth: number }
  | { op: 'garbage'; at: number; bytes: Uint8Array };

export const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      op: fc.constant('flip' as const),
      unit: fc.nat(),
      byte: fc.nat(),
      bit: fc.nat(7),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('truncate' as const),
      fraction: fc.double({ min: 0, max: 1, noNaN: true }),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant('length' as const),
      unit: fc.nat(),
      delta: fc.integer({ min: -8, max: 70_000 }),
      huge: fc.boolean(),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant('count' as const),
      unit: fc.nat(),
      pos: fc.nat(),
      value: fc.oneof(fc.constantFrom(...HUGE), fc.nat(100_000)),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('splice' as const),
      seed: fc.nat(),
      from: fc.nat(),
      to: fc.nat(),
      at: fc.nat(),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('dup' as const),
      unit: fc.nat(),
      times: fc.integer({ min: 1, max: 20 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('drop' as const), unit: fc.nat() }) },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant('typeid' as const),
      unit: fc.nat(),
      id: fc.oneof(fc.integer({ min: -130, max: 130 }), fc.constantFrom(-(2 ** 40), 2 ** 40, 2 ** 53 - 1)),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ op: fc.constant('deep' as const), depth: fc.integer({ min: 10, max: 5000 }) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant('garbage' as const),
      at: fc.nat(),
      bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }),
    }),
  },
);

/** A plan: which seed, and one to three mutations applied in turn. */
export interface Plan {
  seed: number;
  mutations: Mutation[];
}

export const planArb: fc.Arbitrary<Plan> = fc.record({
  seed: fc.nat(),
  mutations: fc.array(mutationArb, { minLength: 1, maxLength: 3 }),
});

/** Values nested `depth` deep, as each framing can nest them. */
function deep(framing: Framing, depth: number): Buffer[] {
  if (framing === 'nest') {
    const json = `{"pattern":"SavePeerMessage","data":${'['.repeat(depth)}${']'.repeat(depth)},"id":"1"}`;
    return [Buffer.from(`${Buffer.byteLength(json)}#${json}`)];
  }
  if (framing === 'sync') return [Buffer.alloc(12 * Math.min(depth, 500))];
  // Slice of slice of … of int: one definition per level, then a value of the outermost.
  const levels = Math.min(depth, 300);
  const units: Buffer[] = [];
  for (let i = 0; i < levels; i++) {
    const id = 65 + i;
    const elem = i === 0 ? 2 : id - 1;
    // wireType{SliceT: sliceType{CommonType{Name, Id}, Elem}}
    units.push(
      gobUnit(
        Buffer.concat([
          gobInt(-id),
          Buffer.from([2, 1, 1, 0x01, 0x61, 1]),
          gobInt(id),
          Buffer.from([0, 1]),
          gobInt(elem),
          Buffer.from([0, 0]),
        ]),
      ),
    );
  }
  units.push(gobUnit(Buffer.concat([gobInt(64 + levels), Buffer.from([0]), Buffer.alloc(levels, 1)])));
  return units;
}

const at = (n: number, length: number) => (length === 0 ? 0 : n % length);

/** Applies `plan` to the seeds (each already cut into units); the result is the bytes to send. */
export function apply(plan: Plan, seeds: Buffer[][], framing: Framing): Buffer {
  let units = [...seeds[at(plan.seed, seeds.length)]];
  let tail: Buffer | null = null;
  for (const m of plan.mutations) {
    const u = at('unit' in m ? m.unit : 0, units.length);
    switch (m.op) {
      case 'flip': {
        if (units.length === 0) break;
        const b = Buffer.from(units[u]);
        if (b.length === 0) break;
        b[at(m.byte, b.length)] ^= 1 << m.bit;
        units[u] = b;
        break;
      }
      case 'truncate': {
        const all = Buffer.concat(units);
        tail = all.subarray(0, Math.floor(all.length * m.fraction));
        units = [];
        break;
      }
      case 'length': {
        if (units.length === 0) break;
        const current =
          framing === 'gob'
            ? gobBody(units[u]).length
            : framing === 'sync'
              ? Math.max(0, units[u].length - 12)
              : units[u].length;
        units[u] = withLength(units[u], framing, m.huge ? 2 ** 31 - 1 : Math.max(0, current + m.delta));
        break;
      }
      case 'count': {
        if (units.length === 0) break;
        if (framing === 'gob') {
          const body = gobBody(units[u]);
          const p = at(m.pos, body.length);
          units[u] = gobUnit(Buffer.concat([body.subarray(0, p), gobUint(m.value), body.subarray(p + 1)]));
        } else if (framing === 'sync') {
          const b = Buffer.from(units[u]);
          if (b.length >= 4) b.writeInt32BE(m.value | 0, at(m.pos, b.length - 3));
          units[u] = b;
        } else {
          // A huge number where the JSON has a number, or a huge array where it has one.
          const text = units[u].toString('utf8');
          const hash = text.indexOf('#');
          const json = text.slice(hash + 1).replace(/\d+/, String(m.value));
          units[u] = Buffer.from(`${Buffer.byteLength(json)}#${json}`);
        }
        break;
      }
      case 'splice': {
        const other = seeds[at(m.seed, seeds.length)];
        const from = at(m.from, other.length);
        const piece = other.slice(from, from + 1 + at(m.to, 4));
        const p = at(m.at, units.length + 1);
        units = [...units.slice(0, p), ...piece, ...units.slice(p)];
        break;
      }
      case 'dup':
        if (units.length === 0) break;
        units = [...units.slice(0, u + 1), ...Array<Buffer>(m.times).fill(units[u]), ...units.slice(u + 1)];
        break;
      case 'drop':
        if (units.length > 1) units = [...units.slice(0, u), ...units.slice(u + 1)];
        break;
      case 'typeid': {
        if (units.length === 0 || framing !== 'gob') {
          // Sync frames carry a command where gob carries a type id.
          if (framing === 'sync' && units.length > 0 && units[u].length >= 9) {
            const b = Buffer.from(units[u]);
            b[8] = m.id & 0xff;
            units[u] = b;
          }
          break;
        }
        const body = gobBody(units[u]);
        const old = readGobUint(body, 0);
        units[u] = gobUnit(Buffer.concat([gobInt(m.id), old ? body.subarray(old.size) : body]));
        break;
      }
      case 'deep':
        units = [...units.slice(0, 1), ...deep(framing, m.depth)];
        break;
      case 'garbage': {
        const all = Buffer.concat(units);
        const p = at(m.at, all.length + 1);
        units = [all.subarray(0, p), Buffer.from(m.bytes), all.subarray(p)];
        break;
      }
    }
  }
  return tail ?? Buffer.concat(units);
}
