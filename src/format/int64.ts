/** 64-bit integers: ids travel as bigint inside the engine and as hi/lo uint32 pairs in the index tables. */

const scratch = new DataView(new ArrayBuffer(8));

export const INT64_MIN = -(2n ** 63n);
export const INT64_MAX = 2n ** 63n - 1n;

/** High 32 bits (as uint32) of a signed 64-bit value. */
export function int64Hi(value: bigint): number {
  scratch.setBigInt64(0, value);
  return scratch.getUint32(0);
}

/** Low 32 bits (as uint32) of a signed 64-bit value. */
export function int64Lo(value: bigint): number {
  return Number(BigInt.asUintN(32, value));
}

export function int64FromParts(hi: number, lo: number): bigint {
  scratch.setUint32(0, hi);
  scratch.setUint32(4, lo);
  return scratch.getBigInt64(0);
}

/** Writes a non-negative message id (a JS number below 2^53) as int64 big-endian. */
export function writeId(buf: Buffer, value: number, offset: number): void {
  buf.writeUInt32BE(Math.floor(value / 0x1_0000_0000), offset);
  buf.writeUInt32BE(value >>> 0, offset + 4);
}

/**
 * Reads an int64 big-endian message id as a JS number. Ids are byte offsets, so every real one is far
 * below 2^53; a value outside [0, 2^53) can only come from corruption and is returned as NaN.
 */
export function readId(buf: Buffer, offset: number): number {
  const hi = buf.readInt32BE(offset);
  if (hi < 0 || hi >= 0x20_0000) return Number.NaN;
  return hi * 0x1_0000_0000 + buf.readUInt32BE(offset + 4);
}

/** JSON-friendly form: a number when safe, otherwise a decimal string. */
export function int64ToJson(value: bigint): number | string {
  return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER)
    ? Number(value)
    : value.toString();
}
