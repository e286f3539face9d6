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
// Local types: what the receiver decodes into (Go's destination type), for type-directed decoding.

/**
 * A Go type on the receiving side. A value is decoded straight into it: fields it lacks and values no
 * one asked for are skipped without building anything, a sender's type it cannot take is an error
 * (Go's compatibility rules: ints into ints, structs matched by field name, slices by element).
 */
export type LocalType =
  | { kind: 'int' | 'uint' | 'bool' | 'string' | 'bytes' | 'float' }
  | { kind: 'slice'; name: string; elem: LocalType }
  | { kind: 'struct'; name: string; fields: ReadonlyMap<string, LocalType> }
  /** An interface: the registered names it may hold, each with the type its values are decoded into. */
  | { kind: 'interface'; types: ReadonlyMap<string, LocalType> };

/**
 * A value decoded into a LocalType: an int or uint as a number when it is a safe integer (else a
 * bigint), a struct as an object holding the fields that were sent (by Go field name), a slice as an
 * array, an interface as {name, value} (null: a nil interface).
 */
export type Decoded =
  | boolean
  | number
  | bigint
  | string
  | Buffer
  | Decoded[]
  | { [field: string]: Decoded }
  | { name: string; value: Decoded }
  | null;

export const Local = {
  int: { kind: 'int' },
  uint: { kind: 'uint' },
  bool: { kind: 'bool' },
  string: { kind: 'string' },
  bytes: { kind: 'bytes' },
  float: { kind: 'float' },
} as const satisfies Record<string, LocalType>;

/**
 * What to decode a top-level value of sender's type `id` into; null: read it and drop it (Go's decoding
 * into nil), after which next() returns SKIPPED. Called once the value's type definitions are known;
 * may be called again for the same value when it had not fully arrived (so it must not count on one call).
 */
export type DecodePlan = (id: number) => LocalType | null;

/** What next() returns for a value its plan chose to drop. */
export const SKIPPED: unique symbol = Symbol('skipped');

/** A compiled struct decoder: for each of the sender's fields, where it goes (null: skipped). */
type StructEngine = ({ name: string; local: LocalType; id: number } | null)[];

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
  /**
   * Most list and map elements one top-level value may hold, read or skipped (default 1 << 20). Every
   * element costs at least one byte, but one byte can cost a receiver far more than that to keep: this
   * bounds the objects one message can make whatever its size.
   */
  maxElements?: number;
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
  private readonly maxElements: number;
  /** Elements read so far in the current top-level value. */
  private elements = 0;
  /** Struct decoders compiled for this stream, by local type, then by the sender's type id. */
  private readonly engines = new Map<LocalType, Map<number, StructEngine>>();

  constructor(private readonly limits: DecoderLimits) {
    this.maxTypes = limits.maxTypes ?? 256;
    this.maxDepth = limits.maxDepth ?? 32;
    this.maxElements = limits.maxElements ?? 1 << 20;
  }

  /** Bytes taken by the complete values read so far (where the next value starts in the stream). */
  consumed = 0;

  /**
   * The type id of the value next() last returned. A receiver that checks a value against the Go type it
   * expects (as Go's decoder does, by the sender's type definition rather than by the value) needs it.
   */
  lastType = 0;

  /**
   * The definition this stream gave type `id` (undefined for built-in ids and ids not defined yet),
   * including, while a DecodePlan runs, those the value being read has just made.
   */
  typeDef(id: number): WireType | undefined {
    return this.pending.get(id) ?? this.types.get(id);
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
    return this.read(undefined) as GobValue | undefined;
  }

  /**
   * The next complete top-level value decoded into the local type `plan` picks for it (SKIPPED when it
   * picked none), or undefined when more bytes are needed. Throws GobError, for a sender's type the local
   * type cannot take too.
   */
  nextAs(plan: DecodePlan): Decoded | typeof SKIPPED | undefined {
    return this.read(plan) as Decoded | typeof SKIPPED | undefined;
  }

  private read(plan: DecodePlan | undefined): GobValue | Decoded | typeof SKIPPED | undefined {
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
    this.elements = 0;
    this.pending.clear();
    let value: GobValue | Decoded | typeof SKIPPED;
    try {
      value = this.readTopLevel(plan);
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

  private readTopLevel(plan: DecodePlan | undefined): GobValue | Decoded | typeof SKIPPED {
    for (;;) {
      this.nextMessage();
      const id = this.readInt();
      if (id < 0) {
        this.readTypeDef(-id);
        if (this.pos !== this.msgEnd) throw new GobError('extra data after a type definition');
        continue;
      }
      let value: GobValue | Decoded | typeof SKIPPED;
      if (plan === undefined) value = this.readConcrete(id);
      else {
        const local = plan(id);
        if (local === null) {
          this.skipConcrete(id);
          value = SKIPPED;
        } else value = this.decodeConcrete(id, local);
      }
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

  /** A signed integer used as a type id: must be a safe JS number. */
  private readInt(): number {
    const v = this.readIntNumber();
    if (typeof v !== 'number') throw new GobError('type id out of range');
    return v;
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
          this.countElements(n, t.key, t.elem);
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
    this.countElements(n, elem);
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
    const id = this.readInterfaceTypeId();
    this.readUintNumber(); // the value's byte count, there for skipping: not needed to read it
    if (++this.depth > this.maxDepth) throw new GobError(`values nested more than ${this.maxDepth} deep`);
    const value = this.readConcrete(id);
    this.depth--;
    return { name, value };
  }

  /** The type id of an interface's concrete value, after the type definitions that may come first. */
  private readInterfaceTypeId(): number {
    // Each definition may end its message (the value goes on in the next one) or be followed, in the
    // same message, by the length prefix of what comes next, which is skipped.
    for (;;) {
      if (this.pos === this.msgEnd) this.nextMessage();
      const id = this.readInt();
      if (id >= 0) return id;
      this.readTypeDef(-id);
      if (this.pos < this.msgEnd) this.readUintNumber();
    }
  }

  // --- bounds on lists ---------------------------------------------------------------------------

  /**
   * Accounts for a list (or map, with a key type) of `n` elements about to be read or skipped: its count
   * must fit in the bytes left of the message at the fewest bytes an element of that type takes, and the
   * elements of the whole top-level value stay under maxElements. Checked before any element is read.
   */
  private countElements(n: number, elem: number, mapElem?: number): void {
    const per = this.minSize(elem, 0) + (mapElem === undefined ? 0 : this.minSize(mapElem, 0));
    if (n * per > this.remaining())
      throw new GobError(`list of ${n} elements runs past its gob message (${this.remaining()} bytes left)`);
    this.elements += n;
    if (this.elements > this.maxElements)
      throw new GobError(`more than ${this.maxElements} list elements in one value`);
  }

  /** The fewest bytes a value of type `id` takes inside a list (an array: all its elements). */
  private minSize(id: number, depth: number): number {
    if (id === TypeId.complex) return 2;
    if (id < FIRST_USER_ID || depth > this.maxDepth) return 1;
    const t = this.typeOf(id);
    if (t.kind !== 'array' || t.len <= 0) return 1;
    return 1 + t.len * this.minSize(t.elem, depth + 1);
  }

  // --- type-directed values ----------------------------------------------------------------------

  private mismatch(local: LocalType, id: number): GobError {
    return new GobError(
      `type mismatch: a ${localName(local)} cannot be decoded from a value sent as ${this.wireName(id)}`,
    );
  }

  private wireName(id: number): string {
    const builtin = BUILTIN_NAMES[id];
    if (builtin) return builtin;
    const t = this.pending.get(id) ?? this.types.get(id);
    return t ? t.name || `(unnamed ${t.kind})` : `type id ${id}`;
  }

  /** Whether a value sent as type `id` can be decoded into `local` (Go's compatibility rules). */
  private compatible(id: number, local: LocalType, depth: number): boolean {
    switch (local.kind) {
      case 'int':
        return id === TypeId.int;
      case 'uint':
        return id === TypeId.uint;
      case 'bool':
        return id === TypeId.bool;
      case 'float':
        return id === TypeId.float;
      case 'string':
        return id === TypeId.string;
      case 'bytes':
        return id === TypeId.bytes;
      case 'interface':
        return id === TypeId.interface;
      case 'slice': {
        if (id < FIRST_USER_ID || depth > this.maxDepth) return false;
        const t = this.typeOf(id);
        return t.kind === 'slice' && this.compatible(t.elem, local.elem, depth + 1);
      }
      case 'struct':
        return id >= FIRST_USER_ID && this.typeOf(id).kind === 'struct';
    }
  }

  /**
   * How the sender's struct type `id` is decoded into `local`, compiled once per stream: each sender's
   * field goes to the local field of its name or, when there is none, is skipped; a field of a type the
   * local one cannot take, or no field in common at all, is refused as Go refuses it.
   */
  private engineFor(id: number, t: Extract<WireType, { kind: 'struct' }>, local: LocalStruct): StructEngine {
    let byId = this.engines.get(local);
    if (!byId) {
      byId = new Map();
      this.engines.set(local, byId);
    }
    const known = byId.get(id);
    if (known) return known;
    const engine: StructEngine = t.fields.map((f) => {
      if (f.name === '') throw new GobError(`empty name for remote field of type ${t.name}`);
      const lt = local.fields.get(f.name);
      if (!lt) return null;
      if (!this.compatible(f.id, lt, 0))
        throw new GobError(`wrong type (${localName(lt)}) for received field ${t.name}.${f.name}`);
      return { name: f.name, local: lt, id: f.id };
    });
    if (local.fields.size > 0 && t.fields.length > 0 && engine.every((e) => e === null))
      throw new GobError(`type mismatch: no fields matched compiling decoder for ${local.name}`);
    byId.set(id, engine);
    return engine;
  }

  /** A value of type `id` as sent at top level or inside an interface, decoded into `local`. */
  private decodeConcrete(id: number, local: LocalType): Decoded {
    const t = id >= FIRST_USER_ID ? this.typeOf(id) : undefined;
    if (t?.kind === 'struct') {
      if (local.kind !== 'struct') throw this.mismatch(local, id);
      return this.decodeStruct(id, t, local);
    }
    if (this.readUintNumber() !== 0) throw new GobError('corrupted data: non-zero delta for a singleton');
    return this.decodeValue(id, local);
  }

  private decodeValue(id: number, local: LocalType): Decoded {
    switch (local.kind) {
      case 'int':
        if (id !== TypeId.int) throw this.mismatch(local, id);
        return this.readIntNumber();
      case 'uint':
        if (id !== TypeId.uint) throw this.mismatch(local, id);
        return this.readUintValue();
      case 'bool': {
        if (id !== TypeId.bool) throw this.mismatch(local, id);
        const v = this.readUintValue();
        if (v !== 0 && v !== 1) throw new GobError(`invalid bool ${v}`);
        return v === 1;
      }
      case 'float':
        if (id !== TypeId.float) throw this.mismatch(local, id);
        return this.readFloat();
      case 'string':
        if (id !== TypeId.string) throw this.mismatch(local, id);
        return this.readBytes().toString('utf8');
      case 'bytes':
        if (id !== TypeId.bytes) throw this.mismatch(local, id);
        return this.readBytes();
      case 'interface':
        if (id !== TypeId.interface) throw this.mismatch(local, id);
        return this.decodeInterface(local);
      case 'slice':
      case 'struct':
        break;
    }
    if (!this.compatible(id, local, 0)) throw this.mismatch(local, id);
    if (++this.depth > this.maxDepth) throw new GobError(`values nested more than ${this.maxDepth} deep`);
    try {
      const t = this.typeOf(id);
      if (local.kind === 'struct')
        return this.decodeStruct(id, t as Extract<WireType, { kind: 'struct' }>, local);
      const elem = (t as Extract<WireType, { kind: 'slice' }>).elem;
      const n = this.readUintNumber();
      this.countElements(n, elem);
      const out = new Array<Decoded>(n);
      const elemLocal = (local as Extract<LocalType, { kind: 'slice' }>).elem;
      for (let i = 0; i < n; i++) out[i] = this.decodeValue(elem, elemLocal);
      return out;
    } finally {
      this.depth--;
    }
  }

  private decodeStruct(
    id: number,
    t: Extract<WireType, { kind: 'struct' }>,
    local: LocalStruct,
  ): { [field: string]: Decoded } {
    const engine = this.engineFor(id, t, local);
    const out: { [field: string]: Decoded } = {};
    let f = -1;
    for (;;) {
      const d = this.readUintNumber();
      if (d === 0) return out;
      f += d;
      if (f >= engine.length)
        throw new GobError(`field ${f} out of range for struct ${t.name || '(unnamed)'}`);
      const slot = engine[f];
      if (slot === null) this.skipValue(t.fields[f].id);
      else out[slot.name] = this.decodeValue(slot.id, slot.local);
    }
  }

  private decodeInterface(local: Extract<LocalType, { kind: 'interface' }>): Decoded {
    const nameLen = this.readUintNumber();
    if (nameLen === 0) return null;
    if (nameLen > this.remaining()) throw new GobError('interface type name runs past its gob message');
    const name = this.buf.toString('latin1', this.pos, this.pos + nameLen);
    this.pos += nameLen;
    const target = local.types.get(name);
    if (!target) throw new GobError(`unknown type name ${JSON.stringify(name)} in an interface value`);
    const id = this.readInterfaceTypeId();
    if (this.readUintNumber() > this.remaining())
      throw new GobError('interface value runs past its gob message');
    if (++this.depth > this.maxDepth) throw new GobError(`values nested more than ${this.maxDepth} deep`);
    const value = this.decodeConcrete(id, target);
    this.depth--;
    return { name, value };
  }

  // --- skipping: reading a value no one asked for, building nothing --------------------------------

  private skipConcrete(id: number): void {
    const t = id >= FIRST_USER_ID ? this.typeOf(id) : undefined;
    if (t?.kind === 'struct') return this.skipStruct(t);
    if (this.readUintNumber() !== 0) throw new GobError('corrupted data: non-zero delta for a singleton');
    this.skipValue(id);
  }

  private skipUint(): void {
    const b = this.byte();
    if (b < 0x80) return;
    const n = 256 - b;
    if (n > 8) throw new GobError(`invalid unsigned integer: ${n}-byte count`);
    if (n > this.remaining()) throw new GobError('value runs past the end of its gob message');
    this.pos += n;
  }

  private skipBytes(): void {
    const n = this.readUintNumber();
    if (n > this.remaining()) throw new GobError(`byte string of ${n} bytes runs past its gob message`);
    this.pos += n;
  }

  private skipValue(id: number): void {
    switch (id) {
      case TypeId.bool:
      case TypeId.int:
      case TypeId.uint:
      case TypeId.float:
        return this.skipUint();
      case TypeId.complex:
        this.skipUint();
        return this.skipUint();
      case TypeId.bytes:
      case TypeId.string:
        return this.skipBytes();
      case TypeId.interface:
        return this.skipInterface();
    }
    if (id < FIRST_USER_ID) throw new GobError(`values of gob type id ${id} are not supported`);
    if (++this.depth > this.maxDepth) throw new GobError(`values nested more than ${this.maxDepth} deep`);
    try {
      const t = this.typeOf(id);
      switch (t.kind) {
        case 'struct':
          return this.skipStruct(t);
        case 'slice':
        case 'array': {
          const n = this.readUintNumber();
          if (t.kind === 'array' && n !== t.len)
            throw new GobError(`array of ${t.len} elements sent with ${n}`);
          this.countElements(n, t.elem);
          for (let i = 0; i < n; i++) this.skipValue(t.elem);
          return;
        }
        case 'map': {
          const n = this.readUintNumber();
          this.countElements(n, t.key, t.elem);
          for (let i = 0; i < n; i++) {
            this.skipValue(t.key);
            this.skipValue(t.elem);
          }
          return;
        }
        case 'opaque':
          return this.skipBytes();
      }
    } finally {
      this.depth--;
    }
  }

  private skipStruct(t: Extract<WireType, { kind: 'struct' }>): void {
    let f = -1;
    for (;;) {
      const d = this.readUintNumber();
      if (d === 0) return;
      f += d;
      if (f >= t.fields.length)
        throw new GobError(`field ${f} out of range for struct ${t.name || '(unnamed)'}`);
      this.skipValue(t.fields[f].id);
    }
  }

  /** An interface value no one asked for: its name, its type definitions, then its bytes by count. */
  private skipInterface(): void {
    const nameLen = this.readUintNumber();
    if (nameLen === 0) return;
    if (nameLen > this.remaining()) throw new GobError('interface type name runs past its gob message');
    this.pos += nameLen;
    this.readInterfaceTypeId();
    this.skipBytes();
  }

  // --- integers as numbers -------------------------------------------------------------------------

  /** An unsigned integer: a number when it is a safe integer, else a bigint. */
  private readUintValue(): number | bigint {
    const b = this.byte();
    if (b < 0x80) return b;
    const n = 256 - b;
    if (n > 8) throw new GobError(`invalid unsigned integer: ${n}-byte count`);
    if (n > this.remaining()) throw new GobError('value runs past the end of its gob message');
    const buf = this.buf;
    let v = 0;
    if (n <= 6) {
      for (let i = 0; i < n; i++) v = v * 256 + buf[this.pos++];
      return v;
    }
    let big = 0n;
    for (let i = 0; i < n; i++) big = (big << 8n) | BigInt(buf[this.pos++]);
    return big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
  }

  /** A signed integer: a number when it is a safe integer, else a bigint. */
  private readIntNumber(): number | bigint {
    const u = this.readUintValue();
    if (typeof u === 'number') return u % 2 === 1 ? -(u - 1) / 2 - 1 : u / 2;
    const v = u & 1n ? ~(u >> 1n) : u >> 1n;
    return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= -BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }
}

type LocalStruct = Extract<LocalType, { kind: 'struct' }>;

/** Go's names for the built-in type ids, as its decoder's errors print them. */
export const BUILTIN_NAMES: Record<number, string> = {
  [TypeId.bool]: 'bool',
  [TypeId.int]: 'int',
  [TypeId.uint]: 'uint',
  [TypeId.float]: 'float',
  [TypeId.bytes]: 'bytes',
  [TypeId.string]: 'string',
  [TypeId.complex]: 'complex',
  [TypeId.interface]: 'interface',
};

/** How Go spells a local type in its errors. */
function localName(t: LocalType): string {
  switch (t.kind) {
    case 'int':
      return 'int64';
    case 'uint':
      return 'uint64';
    case 'bool':
    case 'string':
      return t.kind;
    case 'float':
      return 'float64';
    case 'bytes':
      return '[]uint8';
    case 'interface':
      return 'interface {}';
    case 'slice':
    case 'struct':
      return t.name;
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
    if (typeof v === 'number' && v < 0x80 && v >= 0) {
      this.byte(v);
      return;
    }
    if (typeof v === 'number' && Number.isSafeInteger(v) && v > 0) {
      // Big-endian without leading zeros, after a byte holding the negated count (no BigInt needed).
      let n = 0;
      for (let x = v; x > 0; x = Math.floor(x / 256)) n++;
      this.room(n + 1);
      this.buf[this.len++] = 256 - n;
      for (let i = n - 1; i >= 0; i--) this.buf[this.len++] = Math.floor(v / 256 ** i) % 256;
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
    // Zig-zag in doubles while it stays exact.
    if (typeof v === 'number' && Number.isSafeInteger(v) && Math.abs(v) < 2 ** 52) {
      this.uint(v < 0 ? -2 * v - 1 : 2 * v);
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
