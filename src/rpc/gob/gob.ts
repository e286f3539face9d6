/**
 * The parts of Go's encoding/gob that Go's RPC protocols need (gorpc and net/rpc both carry gob),
 * written from the format description (Go's src/encoding/gob/doc.go): a stream decoder that reads any
 * well-formed gob stream into plain values, and a stream encoder that writes the bytes Go's Encoder
 * writes for the types described here. Both transports use this one codec.
 *
 * Pure functions and per-stream state only: no sockets, no Nest.
 */

/** Malformed or unacceptable gob input; the message says what was wrong. */
export class GobError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GobError';
  }
}

/** A message whose length prefix is over the decoder's limit: refused before any of it is kept. */
export class GobLimitError extends GobError {
  constructor(
    readonly length: number,
    readonly limit: number,
  ) {
    super(`gob message of ${length} bytes exceeds the limit of ${limit}`);
    this.name = 'GobLimitError';
  }
}

/** Thrown inside the decoder when the buffered bytes end before the value does. */
class NeedMore extends Error {}
const NEED_MORE = new NeedMore('need more bytes');

/** Built-in gob type ids (fixed by the format). */
export const TypeId = {
  bool: 1,
  int: 2,
  uint: 3,
  float: 4,
  bytes: 5,
  string: 6,
  complex: 7,
  interface: 8,
  wireType: 16,
} as const;

/** Go's first id for user-defined types; ids below it belong to the format itself. */
const FIRST_USER_ID = 65;

// ---------------------------------------------------------------------------------------------------
// Wire types: what a typedef message says about a type id.

export type WireType =
  | { kind: 'struct'; name: string; fields: { name: string; id: number }[] }
  | { kind: 'slice'; name: string; elem: number }
  | { kind: 'array'; name: string; elem: number; len: number }
  | { kind: 'map'; name: string; key: number; elem: number }
  /** GobEncoder, BinaryMarshaler or TextMarshaler: the value travels as a byte string. */
  | { kind: 'opaque'; name: string };

/** A decoded interface value: the registered type name and the concrete value (null: a nil interface). */
export interface GobInterface {
  name: string;
  value: GobValue;
}

export type GobValue =
  | boolean
  | bigint
  | number
  | string
  | Buffer
  | GobValue[]
  | GobStruct
  | GobInterface
  | [number, number]
  | null;

/** A decoded struct: only the fields the sender transmitted (zero values are left out on the wire). */
export class GobStruct {
  constructor(
    readonly typeName: string,
    readonly fields: Map<string, GobValue>,
  ) {}
}

// ---------------------------------------------------------------------------------------------------
// Decoding

export interface DecoderLimits {
  /** Largest gob message accepted (its length prefix); larger ones are refused before any byte is kept. */
  maxMessage: number;
  /** Interface type names this side has registered; any other name is refused. */
  names: ReadonlySet<string>;
  /** Most type definitions one stream may make. */
  maxTypes?: number;
  /** Deepest nesting of values. */
  maxDepth?: number;
}

/**
 * Reads gob values from one stream. Feed it bytes as they arrive; `next()` returns each complete
 * top-level value, or undefined when the buffered bytes do not hold one yet. Type definitions seen
 * while reading a value are kept only once the whole value has been read, so a value cut off by the
 * end of the buffered bytes is simply read again from its start later.
 */
export class GobStreamDecoder {
  private readonly types = new Map<number, WireType>();
  private readonly pending = new Map<number, WireType>();
  private chunks: Buffer[] = [];
  private buffered = 0;
  private buf: Buffer = Buffer.alloc(0);
  private pos = 0;
  private msgEnd = 0;
  private depth = 0;
  /** Total bytes the value being read needs, when a message length said so (0: unknown). */
  private wanted = 0;
  private readonly maxTypes: number;
  private readonly maxDepth: number;

  constructor(private readonly limits: DecoderLimits) {
    this.maxTypes = limits.maxTypes ?? 256;
    this.maxDepth = limits.maxDepth ?? 32;
  }

  /** Bytes taken by the complete values read so far (where the next value starts in the stream). */
  consumed = 0;

  /**
   * The type id of the value next() last returned. A receiver that checks a value against the Go type it
   * expects (as Go's decoder does, by the sender's type definition rather than by the value) needs it.
   */
  lastType = 0;

  /** The definition this stream gave type `id` (undefined for built-in ids and ids not defined yet). */
  typeDef(id: number): WireType | undefined {
    return this.types.get(id);
  }

  /** Bytes received but not yet consumed by a complete value. */
  get bufferedBytes(): number {
    return this.buffered + this.buf.length;
  }

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  /** The next complete top-level value, or undefined when more bytes are needed. Throws GobError. */
  next(): GobValue | undefined {
    if (this.wanted > this.buf.length + this.buffered) return undefined;
    if (this.chunks.length > 0) {
      this.buf =
        this.buf.length === 0 && this.chunks.length === 1
          ? this.chunks[0]
          : Buffer.concat([this.buf, ...this.chunks]);
      this.chunks = [];
      this.buffered = 0;
    }
    if (this.buf.length === 0) return undefined;
    this.pos = 0;
    this.msgEnd = 0;
    this.depth = 0;
    this.wanted = 0;
    this.pending.clear();
    let value: GobValue;
    try {
      value = this.readTopLevel();
    } catch (err) {
      if (err === NEED_MORE) {
        this.pending.clear();
        // Every top-level read starts with a complete message length, so a stream cut off here can be
        // at most one message past the limit: the length check in nextMessage() bounds the buffer.
        return undefined;
      }
      throw err;
    }
    for (const [id, t] of this.pending) this.types.set(id, t);
    this.pending.clear();
    this.consumed += this.pos;
    this.buf = this.pos === this.buf.length ? Buffer.alloc(0) : this.buf.subarray(this.pos);
    return value;
  }

  private readTopLevel(): GobValue {
    for (;;) {
      this.nextMessage();
      const id = this.readInt();
      if (id < 0) {
        this.readTypeDef(-id);
        if (this.pos !== this.msgEnd) throw new GobError('extra data after a type definition');
        continue;
      }
      const value = this.readConcrete(id);
      if (this.pos !== this.msgEnd)
        throw new GobError(`message is ${this.msgEnd - this.pos} bytes longer than the value it holds`);
      this.lastType = id;
      return value;
    }
  }

  /** Starts the next length-prefixed message at pos. */
  private nextMessage(): void {
    const buf = this.buf;
    if (this.pos >= buf.length) throw NEED_MORE;
    const first = buf[this.pos];
    let len = first;
    let size = 1;
    if (first >= 0x80) {
      const n = 256 - first;
      if (n > 8) throw new GobError(`invalid message length: ${n}-byte count`);
      if (this.pos + 1 + n > buf.length) throw NEED_MORE;
      len = 0;
      for (let i = 1; i <= n; i++) len = len * 256 + buf[this.pos + i];
      size = 1 + n;
    }
    if (len === 0) throw new GobError('empty gob message');
    if (len > this.limits.maxMessage) throw new GobLimitError(len, this.limits.maxMessage);
    this.pos += size;
    if (this.pos + len > buf.length) {
      this.wanted = this.pos + len;
      throw NEED_MORE;
    }
    this.msgEnd = this.pos + len;
  }

  private byte(): number {
    if (this.pos >= this.msgEnd) throw new GobError('value runs past the end of its gob message');
    return this.buf[this.pos++];
  }

  private readUint(): bigint {
    const b = this.byte();
    if (b < 0x80) return BigInt(b);
    const n = 256 - b;
    if (n > 8) throw new GobError(`invalid unsigned integer: ${n}-byte count`);
    let v = 0n;
    for (let i = 0; i < n; i++) v = (v << 8n) | BigInt(this.byte());
    return v;
  }

  /** An unsigned integer used as a count or length: must be a safe JS number. */
  private readUintNumber(): number {
    const b = this.byte();
    if (b < 0x80) return b;
    const n = 256 - b;
    if (n > 8) throw new GobError(`invalid unsigned integer: ${n}-byte count`);
    let v = 0;
    for (let i = 0; i < n; i++) v = v * 256 + this.byte();
    if (!Number.isSafeInteger(v)) throw new GobError('count out of range');
    return v;
  }

  private readIntBig(): bigint {
    const u = this.readUint();
    return u & 1n ? ~(u >> 1n) : u >> 1n;
  }

  private readInt(): number {
    const v = this.readIntBig();
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < -BigInt(Number.MAX_SAFE_INTEGER))
      throw new GobError('type id out of range');
    return Number(v);
  }

  private remaining(): number {
    return this.msgEnd - this.pos;
  }

  private readBytes(): Buffer {
    const n = this.readUintNumber();
    if (n > this.remaining()) throw new GobError(`byte string of ${n} bytes runs past its gob message`);
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  private typeOf(id: number): WireType {
    const t = this.pending.get(id) ?? this.types.get(id);
    if (!t) throw new GobError(`unknown gob type id ${id}`);
    return t;
  }

  // --- type definitions --------------------------------------------------------------------------

  private readTypeDef(id: number): void {
    if (id < FIRST_USER_ID) throw new GobError(`type definition for reserved id ${id}`);
    if (this.types.has(id) || this.pending.has(id)) throw new GobError(`type id ${id} defined twice`);
    if (this.types.size + this.pending.size >= this.maxTypes)
      throw new GobError(`more than ${this.maxTypes} type definitions`);
    // wireType: exactly one of its pointer fields is set.
    const field = this.readUintNumber() - 1;
    let t: WireType;
    switch (field) {
      case 0: {
        const s = this.readFields(3);
        t = { kind: 'array', name: s.name, elem: s.ids[1], len: s.ids[2] };
        break;
      }
      case 1: {
        const s = this.readFields(2);
        t = { kind: 'slice', name: s.name, elem: s.ids[1] };
        break;
      }
      case 2:
        t = this.readStructType();
        break;
      case 3: {
        const s = this.readFields(3);
        t = { kind: 'map', name: s.name, key: s.ids[1], elem: s.ids[2] };
        break;
      }
      case 4:
      case 5:
      case 6:
        t = { kind: 'opaque', name: this.readFields(1).name };
        break;
      default:
        throw new GobError(`invalid type definition (wireType field ${field})`);
    }
    if (this.readUintNumber() !== 0) throw new GobError('invalid type definition (more than one kind)');
    this.pending.set(id, t);
  }

  /** CommonType: {Name string; Id int}; returns its name. */
  private readCommonType(): string {
    let name = '';
    let f = -1;
    for (;;) {
      const d = this.readUintNumber();
      if (d === 0) return name;
      f += d;
      if (f === 0) name = this.readBytes().toString('latin1');
      else if (f === 1) this.readInt();
      else throw new GobError('invalid type definition (CommonType)');
    }
  }

  /** arrayType/sliceType/mapType/gobEncoderType: CommonType then `count - 1` int fields. */
  private readFields(count: number): { name: string; ids: number[] } {
    const ids = new Array<number>(count).fill(0);
    let name = '';
    let f = -1;
    for (;;) {
      const d = this.readUintNumber();
      if (d === 0) return { name, ids };
      f += d;
      if (f === 0) name = this.readCommonType();
      else if (f < count) ids[f] = this.readInt();
      else throw new GobError('invalid type definition (field out of range)');
    }
  }

  private readStructType(): WireType {
    let name = '';
    const fields: { name: string; id: number }[] = [];
    let f = -1;
    for (;;) {
      const d = this.readUintNumber();
      if (d === 0) return { kind: 'struct', name, fields };
      f += d;
      if (f === 0) name = this.readCommonType();
      else if (f === 1) {
        const n = this.readUintNumber();
        if (n > this.remaining()) throw new GobError('struct definition lists more fields than it holds');
        for (let i = 0; i < n; i++) {
          let fieldName = '';
          let fieldId = 0;
          let g = -1;
          for (;;) {
            const e = this.readUintNumber();
            if (e === 0) break;
            g += e;
            if (g === 0) fieldName = this.readBytes().toString('latin1');
            else if (g === 1) fieldId = this.readInt();
            else throw new GobError('invalid type definition (fieldType)');
          }
          fields.push({ name: fieldName, id: fieldId });
        }
      } else throw new GobError('invalid type definition (structType)');
    }
  }

  // --- values ----------------------------------------------------------------------------------

  /** A value of type `id` as sent at top level or inside an interface: non-structs get a 0 delta first. */
  private readConcrete(id: number): GobValue {
    const t = id >= FIRST_USER_ID ? this.typeOf(id) : undefined;
    if (t?.kind === 'struct') return this.readStruct(t);
    if (this.readUintNumber() !== 0) throw new GobError('corrupted data: non-zero delta for a singleton');
    return this.readValue(id);
  }

  private readValue(id: number): GobValue {
    switch (id) {
      case TypeId.bool: {
        const v = this.readUint();
        if (v > 1n) throw new GobError(`invalid bool ${v}`);
        return v === 1n;
      }
      case TypeId.int:
        return this.readIntBig();
      case TypeId.uint:
        return this.readUint();
      case TypeId.float:
        return this.readFloat();
      case TypeId.bytes:
        return this.readBytes();
      case TypeId.string:
        return this.readBytes().toString('utf8');
      case TypeId.complex:
        return [this.readFloat(), this.readFloat()];
      case TypeId.interface:
        return this.readInterface();
    }
    if (id < FIRST_USER_ID) throw new GobError(`values of gob type id ${id} are not supported`);
    if (++this.depth > this.maxDepth) throw new GobError(`values nested more than ${this.maxDepth} deep`);
    try {
      const t = this.typeOf(id);
      switch (t.kind) {
        case 'struct':
          return this.readStruct(t);
        case 'slice':
          return this.readList(this.readUintNumber(), t.elem);
        case 'array': {
          const n = this.readUintNumber();
          if (n !== t.len) throw new GobError(`array of ${t.len} elements sent with ${n}`);
          return this.readList(n, t.elem);
        }
        case 'map': {
          const n = this.readUintNumber();
          if (n > this.remaining()) throw new GobError('map count runs past its gob message');
          const out: GobValue[] = [];
          for (let i = 0; i < n; i++) out.push([this.readValue(t.key), this.readValue(t.elem)] as GobValue[]);
          return out;
        }
        case 'opaque':
          return this.readBytes();
      }
    } finally {
      this.depth--;
    }
  }

  private readList(n: number, elem: number): GobValue[] {
    // Every element takes at least one byte, so a count larger than what is left is a lie.
    if (n > this.remaining()) throw new GobError(`list of ${n} elements runs past its gob message`);
    const out = new Array<GobValue>(n);
    for (let i = 0; i < n; i++) out[i] = this.readValue(elem);
    return out;
  }

  private readFloat(): number {
    const u = this.readUint();
    // Floats travel byte-reversed so that common values have short encodings.
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(u);
    return b.readDoubleBE(0);
  }

  private readStruct(t: Extract<WireType, { kind: 'struct' }>): GobStruct {
    const fields = new Map<string, GobValue>();
    let f = -1;
    for (;;) {
      const d = this.readUintNumber();
      if (d === 0) return new GobStruct(t.name, fields);
      f += d;
      if (f >= t.fields.length)
        throw new GobError(`field ${f} out of range for struct ${t.name || '(unnamed)'}`);
      const field = t.fields[f];
      fields.set(field.name, this.readValue(field.id));
    }
  }

  private readInterface(): GobInterface | null {
    const nameLen = this.readUintNumber();
    if (nameLen === 0) return null;
    if (nameLen > this.remaining()) throw new GobError('interface type name runs past its gob message');
    const name = this.buf.toString('latin1', this.pos, this.pos + nameLen);
    this.pos += nameLen;
    if (!this.limits.names.has(name))
      throw new GobError(`unknown type name ${JSON.stringify(name)} in an interface value`);
    // Type definitions may come first; each may end its message (the value goes on in the next one)
    // or be followed, in the same message, by the length prefix of what comes next, which is skipped.
    let id: number;
    for (;;) {
      if (this.pos === this.msgEnd) this.nextMessage();
      id = this.readInt();
      if (id >= 0) break;
      this.readTypeDef(-id);
      if (this.pos < this.msgEnd) this.readUintNumber();
    }
    this.readUintNumber(); // the value's byte count, there for skipping: not needed to read it
    if (++this.depth > this.maxDepth) throw new GobError(`values nested more than ${this.maxDepth} deep`);
    const value = this.readConcrete(id);
    this.depth--;
    return { name, value };
  }
}

// ---------------------------------------------------------------------------------------------------
// Encoding

/** A Go type the encoder can write, with the id this side gives it. Pointers are transparent in gob. */
export type GoType =
  | { kind: 'bool' | 'int' | 'uint' | 'bytes' | 'string' | 'interface' }
  | { kind: 'struct'; id: number; name: string; fields: { name: string; type: GoType }[] }
  | { kind: 'slice'; id: number; name: string; elem: GoType }
  | { kind: 'array'; id: number; name: string; elem: GoType; len: number };

export const GoBasic = {
  bool: { kind: 'bool' },
  int: { kind: 'int' },
  uint: { kind: 'uint' },
  bytes: { kind: 'bytes' },
  string: { kind: 'string' },
  interface: { kind: 'interface' },
} as const satisfies Record<string, GoType>;

/** A value to encode into an interface: its registered name, its Go type and the value. */
export interface GoInterfaceValue {
  name: string;
  type: GoType;
  value: unknown;
}

function idOf(t: GoType): number {
  switch (t.kind) {
    case 'bool':
      return TypeId.bool;
    case 'int':
      return TypeId.int;
    case 'uint':
      return TypeId.uint;
    case 'bytes':
      return TypeId.bytes;
    case 'string':
      return TypeId.string;
    case 'interface':
      return TypeId.interface;
    default:
      return t.id;
  }
}

/** A growable byte buffer with gob's integer encodings. */
class Out {
  buf: Buffer;
  len = 0;

  constructor(size = 256) {
    this.buf = Buffer.allocUnsafe(size);
  }

  private room(n: number): void {
    if (this.len + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.len + n));
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }

  byte(b: number): void {
    this.room(1);
    this.buf[this.len++] = b;
  }

  uint(v: number | bigint): void {
    if (typeof v === 'number' && v < 0x80) {
      this.byte(v);
      return;
    }
    let big = BigInt(v);
    if (big < 0n) throw new Error(`gob: negative unsigned value ${big}`);
    if (big < 0x80n) {
      this.byte(Number(big));
      return;
    }
    const bytes: number[] = [];
    while (big > 0n) {
      bytes.unshift(Number(big & 0xffn));
      big >>= 8n;
    }
    this.room(bytes.length + 1);
    this.buf[this.len++] = 256 - bytes.length;
    for (const b of bytes) this.buf[this.len++] = b;
  }

  int(v: number | bigint): void {
    if (typeof v === 'number' && v >= 0 && v < 0x40) {
      this.byte(v * 2);
      return;
    }
    const big = BigInt(v);
    this.uint(big < 0n ? (~big << 1n) | 1n : big << 1n);
  }

  raw(b: Buffer | Uint8Array): void {
    this.room(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }

  string(s: string | Buffer): void {
    const b = typeof s === 'string' ? Buffer.from(s, 'utf8') : s;
    this.uint(b.length);
    this.raw(b);
  }

  bytes(): Buffer {
    return this.buf.subarray(0, this.len);
  }

  reset(): void {
    this.len = 0;
  }
}

/** Where a finished message goes: the stream itself, or the buffer of the value that encloses it. */
type Sink = { chunks: Buffer[] } | Out;

function writeMessage(sink: Sink, b: Out): void {
  const prefix = new Out(9);
  prefix.uint(b.len);
  if (sink instanceof Out) {
    sink.raw(prefix.bytes());
    sink.raw(b.bytes());
  } else {
    sink.chunks.push(Buffer.from(prefix.bytes()), Buffer.from(b.bytes()));
  }
  b.reset();
}

function isZero(t: GoType, v: unknown): boolean {
  switch (t.kind) {
    case 'bool':
      return v !== true;
    case 'int':
    case 'uint':
      return v === 0 || v === 0n || v === undefined;
    case 'bytes':
    case 'string':
    case 'slice':
      return v === undefined || (v as { length: number }).length === 0;
    case 'interface':
      return v === null || v === undefined;
    case 'struct':
    case 'array':
      return false;
  }
}

/**
 * Writes gob values to one stream, as Go's Encoder does: each type is described once per stream, the
 * first time a value of it is sent, including (Go's own layout) the partly written enclosing value in
 * the message that carries a definition made from inside an interface.
 */
export class GobStreamEncoder {
  private readonly sent = new Set<number>();
  private readonly writers: Sink[] = [];

  /** The bytes of one top-level value of type `t` (definitions it needs first). */
  encode(t: GoType, value: unknown): Buffer {
    const stream = { chunks: [] as Buffer[] };
    this.writers.length = 0;
    this.writers.push(stream);
    const b = new Out();
    this.sendTypeDescriptor(stream, b, t);
    b.int(idOf(t));
    this.encodeValue(b, t, value);
    writeMessage(stream, b);
    return Buffer.concat(stream.chunks);
  }

  private writer(): Sink {
    return this.writers[this.writers.length - 1];
  }

  private sendTypeDescriptor(w: Sink, b: Out, t: GoType): void {
    const id = idOf(t);
    if (this.sent.has(id)) return;
    if (!this.sendType(w, b, t)) this.sent.add(id);
  }

  private sendType(w: Sink, b: Out, t: GoType): boolean {
    if (t.kind !== 'struct' && t.kind !== 'slice' && t.kind !== 'array') return false;
    if (this.sent.has(t.id)) return false;
    b.int(-t.id);
    this.encodeWireType(b, t);
    writeMessage(w, b);
    this.sent.add(t.id);
    if (t.kind === 'struct') for (const f of t.fields) this.sendType(w, b, f.type);
    else this.sendType(w, b, t.elem);
    return true;
  }

  /** The wireType struct describing `t` (zero fields left out, as for any struct). */
  private encodeWireType(b: Out, t: Extract<GoType, { id: number }>): void {
    const common = (o: Out) => {
      o.byte(1); // CommonType
      if (t.name) {
        o.byte(1);
        o.string(t.name);
        o.byte(1);
      } else o.byte(2);
      o.int(t.id);
      o.byte(0);
    };
    switch (t.kind) {
      case 'array':
        b.byte(1); // ArrayT
        common(b);
        b.byte(1);
        b.int(idOf(t.elem));
        b.byte(1);
        b.int(t.len);
        b.byte(0);
        break;
      case 'slice':
        b.byte(2); // SliceT
        common(b);
        b.byte(1);
        b.int(idOf(t.elem));
        b.byte(0);
        break;
      case 'struct':
        b.byte(3); // StructT
        common(b);
        // The field list is a slice: an empty one (struct{}) is a zero value, left out like any other.
        if (t.fields.length > 0) {
          b.byte(1);
          b.uint(t.fields.length);
          for (const f of t.fields) {
            b.byte(1);
            b.string(f.name);
            b.byte(1);
            b.int(idOf(f.type));
            b.byte(0);
          }
        }
        b.byte(0);
        break;
    }
    b.byte(0);
  }

  /** A value as sent at top level or inside an interface: structs as is, anything else after a 0 delta. */
  private encodeValue(b: Out, t: GoType, v: unknown): void {
    if (t.kind === 'struct') this.encodeStruct(b, t, v as Record<string, unknown>);
    else {
      b.byte(0);
      this.encodeElement(b, t, v);
    }
  }

  private encodeStruct(b: Out, t: Extract<GoType, { kind: 'struct' }>, v: Record<string, unknown>): void {
    let last = -1;
    t.fields.forEach((f, i) => {
      const fv = v[f.name];
      if (isZero(f.type, fv)) return;
      b.uint(i - last);
      last = i;
      this.encodeElement(b, f.type, fv);
    });
    b.byte(0);
  }

  private encodeElement(b: Out, t: GoType, v: unknown): void {
    switch (t.kind) {
      case 'bool':
        b.uint(v === true ? 1 : 0);
        return;
      case 'int':
        b.int((v ?? 0) as number | bigint);
        return;
      case 'uint':
        b.uint((v ?? 0) as number | bigint);
        return;
      case 'bytes':
        b.string((v ?? Buffer.alloc(0)) as Buffer);
        return;
      case 'string':
        b.string((v ?? '') as string);
        return;
      case 'interface':
        this.encodeInterface(b, v as GoInterfaceValue | null);
        return;
      case 'struct':
        this.encodeStruct(b, t, v as Record<string, unknown>);
        return;
      case 'slice':
      case 'array': {
        const list = (v ?? []) as unknown[];
        if (t.kind === 'array' && list.length !== t.len)
          throw new Error(`gob: ${t.name} needs ${t.len} elements`);
        b.uint(list.length);
        for (const e of list) this.encodeElement(b, t.elem, e);
        return;
      }
    }
  }

  private encodeInterface(b: Out, iv: GoInterfaceValue | null): void {
    if (!iv) {
      b.byte(0);
      return;
    }
    b.string(iv.name);
    // A definition made here is written with whatever of the enclosing value `b` holds so far.
    this.sendTypeDescriptor(this.writer(), b, iv.type);
    b.int(idOf(iv.type));
    this.writers.push(b);
    const data = new Out();
    this.encodeValue(data, iv.type, iv.value);
    this.writers.pop();
    writeMessage(b, data);
  }
}
