/**
 * CRC-32 (IEEE 802.3, the polynomial of zlib, gzip and Node's `zlib.crc32`) of `buf[start..end)`, the
 * same value as `zlib.crc32(buf.subarray(start, end))`.
 *
 * Why not always `zlib.crc32`: a call costs about 200 ns whatever the length (the crossing into C++, the
 * argument checks and the `subarray` it needs), and a record is typically 70–200 bytes, so checking
 * every record a sync reads cost more in calls than in CRC. Below `NATIVE_FROM` bytes a table-driven
 * slice-by-8 loop in JavaScript is 2–3 times cheaper (about 0.5 ns a byte, no allocation); from there on
 * zlib's own loop is faster and its call cost no longer matters.
 */
import { crc32 as zlibCrc32 } from 'node:zlib';

/** From this many bytes on, zlib's loop beats the JavaScript one (measured: they cross near 500). */
export const NATIVE_FROM = 512;

/** Slice-by-8 tables: T[k * 256 + n] is the CRC of byte n followed by k zero bytes. */
const T = new Int32Array(8 * 256);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  T[n] = c;
}
for (let n = 0; n < 256; n++) {
  let c = T[n];
  for (let k = 1; k < 8; k++) {
    c = T[c & 255] ^ (c >>> 8);
    T[k * 256 + n] = c;
  }
}

/** The JavaScript loop alone (tests hold it equal to zlib's). */
export function crc32Js(buf: Uint8Array, start: number, end: number): number {
  let c = -1;
  let i = start;
  for (; i + 8 <= end; i += 8) {
    c ^= buf[i] | (buf[i + 1] << 8) | (buf[i + 2] << 16) | (buf[i + 3] << 24);
    c =
      T[1792 + (c & 255)] ^
      T[1536 + ((c >>> 8) & 255)] ^
      T[1280 + ((c >>> 16) & 255)] ^
      T[1024 + (c >>> 24)] ^
      T[768 + buf[i + 4]] ^
      T[512 + buf[i + 5]] ^
      T[256 + buf[i + 6]] ^
      T[buf[i + 7]];
  }
  for (; i < end; i++) c = T[(c ^ buf[i]) & 255] ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}

/** CRC-32 of `buf[start..end)`, unsigned. */
export function crc32Of(buf: Uint8Array, start: number, end: number): number {
  return end - start < NATIVE_FROM ? crc32Js(buf, start, end) : zlibCrc32(buf.subarray(start, end));
}
