/**
 * A compact open-addressing hash table from a pair of int64 keys (appid + uid, or appid + gid) to a few
 * message ids. Entries live in fixed-size typed-array chunks (struct of arrays), so 10 million users
 * cost about 36 bytes each plus 4-8 bytes of slot table, with no per-entry JS objects for the GC to walk.
 *
 * Keys are stored as four uint32 words (hi/lo of each int64). Values are message ids, which are byte
 * offsets far below 2^53, stored as float64. `aux` is one uint32 of extra state per entry.
 */
const CHUNK_BITS = 16;
const CHUNK_SIZE = 1 << CHUNK_BITS;
const CHUNK_MASK = CHUNK_SIZE - 1;
const MAX_LOAD = 0.75;

function mix(h: number, k: number): number {
  k = Math.imul(k, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, 0x1b873593);
  h ^= k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

function hashKey(aHi: number, aLo: number, bHi: number, bLo: number): number {
  let h = mix(mix(mix(mix(0x9747b28c, aHi), aLo), bHi), bLo);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export class IdTable {
  private keyChunks: Uint32Array[] = [];
  private valueChunks: Float64Array[] = [];
  private auxChunks: Uint32Array[] = [];
  private slots: Int32Array;
  private mask: number;
  private count = 0;

  constructor(
    readonly valuesPerEntry: number,
    initialCapacity = 1024,
  ) {
    let cap = 1024;
    while (cap * MAX_LOAD < initialCapacity) cap *= 2;
    this.slots = new Int32Array(cap);
    this.mask = cap - 1;
  }

  get size(): number {
    return this.count;
  }

  /** Bytes held by the typed arrays (for /summary and the memory benchmark). */
  get byteSize(): number {
    const perChunk = CHUNK_SIZE * (16 + 8 * this.valuesPerEntry + 4);
    return this.keyChunks.length * perChunk + this.slots.byteLength;
  }

  /** Entry number for the key, or -1. */
  find(aHi: number, aLo: number, bHi: number, bLo: number): number {
    let i = hashKey(aHi, aLo, bHi, bLo) & this.mask;
    for (;;) {
      const slot = this.slots[i];
      if (slot === 0) return -1;
      const e = slot - 1;
      const keys = this.keyChunks[e >>> CHUNK_BITS];
      const k = (e & CHUNK_MASK) << 2;
      if (keys[k] === aHi && keys[k + 1] === aLo && keys[k + 2] === bHi && keys[k + 3] === bLo) return e;
      i = (i + 1) & this.mask;
    }
  }

  /** Entry number for the key, created with zero values when missing. */
  upsert(aHi: number, aLo: number, bHi: number, bLo: number): number {
    let i = hashKey(aHi, aLo, bHi, bLo) & this.mask;
    for (;;) {
      const slot = this.slots[i];
      if (slot === 0) break;
      const e = slot - 1;
      const keys = this.keyChunks[e >>> CHUNK_BITS];
      const k = (e & CHUNK_MASK) << 2;
      if (keys[k] === aHi && keys[k + 1] === aLo && keys[k + 2] === bHi && keys[k + 3] === bLo) return e;
      i = (i + 1) & this.mask;
    }
    const e = this.count;
    const c = e >>> CHUNK_BITS;
    if (c === this.keyChunks.length) {
      this.keyChunks.push(new Uint32Array(CHUNK_SIZE * 4));
      this.valueChunks.push(new Float64Array(CHUNK_SIZE * this.valuesPerEntry));
      this.auxChunks.push(new Uint32Array(CHUNK_SIZE));
    }
    const k = (e & CHUNK_MASK) << 2;
    const keys = this.keyChunks[c];
    keys[k] = aHi;
    keys[k + 1] = aLo;
    keys[k + 2] = bHi;
    keys[k + 3] = bLo;
    this.slots[i] = e + 1;
    this.count++;
    if (this.count > this.slots.length * MAX_LOAD) this.grow();
    return e;
  }

  getValue(entry: number, field: number): number {
    return this.valueChunks[entry >>> CHUNK_BITS][(entry & CHUNK_MASK) * this.valuesPerEntry + field];
  }

  setValue(entry: number, field: number, value: number): void {
    this.valueChunks[entry >>> CHUNK_BITS][(entry & CHUNK_MASK) * this.valuesPerEntry + field] = value;
  }

  getAux(entry: number): number {
    return this.auxChunks[entry >>> CHUNK_BITS][entry & CHUNK_MASK];
  }

  setAux(entry: number, value: number): void {
    this.auxChunks[entry >>> CHUNK_BITS][entry & CHUNK_MASK] = value;
  }

  /** Key word `w` (0: a.hi, 1: a.lo, 2: b.hi, 3: b.lo) of an entry. */
  keyWord(entry: number, w: number): number {
    return this.keyChunks[entry >>> CHUNK_BITS][((entry & CHUNK_MASK) << 2) + w];
  }

  /**
   * A frozen copy of the keys and values, taken synchronously so it is a consistent point-in-time
   * view; the copy is a few memcpys, cheap next to serialising it.
   */
  snapshot(): IdTableSnapshot {
    const n = this.count;
    const chunks = Math.ceil(n / CHUNK_SIZE);
    return {
      count: n,
      valuesPerEntry: this.valuesPerEntry,
      keys: this.keyChunks.slice(0, chunks).map((c) => c.slice()),
      values: this.valueChunks.slice(0, chunks).map((c) => c.slice()),
    };
  }

  clear(): void {
    this.keyChunks = [];
    this.valueChunks = [];
    this.auxChunks = [];
    this.slots = new Int32Array(1024);
    this.mask = 1023;
    this.count = 0;
  }

  private grow(): void {
    const cap = this.slots.length * 2;
    const slots = new Int32Array(cap);
    const mask = cap - 1;
    for (let e = 0; e < this.count; e++) {
      const keys = this.keyChunks[e >>> CHUNK_BITS];
      const k = (e & CHUNK_MASK) << 2;
      let i = hashKey(keys[k], keys[k + 1], keys[k + 2], keys[k + 3]) & mask;
      while (slots[i] !== 0) i = (i + 1) & mask;
      slots[i] = e + 1;
    }
    this.slots = slots;
    this.mask = mask;
  }
}

export interface IdTableSnapshot {
  count: number;
  valuesPerEntry: number;
  keys: Uint32Array[];
  values: Float64Array[];
}

export const ID_TABLE_CHUNK_SIZE = CHUNK_SIZE;
