/**
 * Filler records: what `ims repair --damaged fill` writes over a damaged record, so that the whole
 * records after it stay readable. A filler is one ordinary record of exactly the damaged span's length:
 *
 *   MAGIC | length | seq 0x46494c4c ("FILL") | cmd 23 | version 0 | flag 0 | 0 | body | MAGIC
 *
 * with a body of a short ASCII note and zeros. Why cmd 23: Go ims 2.0 registers it as
 * MSG_CUSTOMER_SERVICE_, an `IgnoreMessage` ("kept on disk, no longer processed") whose parser
 * accepts any body, so Go reads the record like any other: its index rebuild and replay pass over it
 * (they act only on cmds 250, 252, 254), SyncMessage and GetLatestMessage skip it (not a kind they
 * return), and a queue walk that reaches it as an entry ends there ("invalid message cmd"). An unknown
 * cmd would not do: Go refuses to parse a record of an unknown cmd with a non-empty body, which stops
 * its rebuild at that record. Go never writes cmd 23 with this seq (its saves write seq 0, and its
 * 23 has an empty body), nor does ims save cmd 23 at all, so the pair marks a filler unambiguously.
 * Pure functions only.
 */
import { MAX_BODY_SIZE, RECORD_OVERHEAD } from './constants.js';
import { encodeRecord } from './record.js';

export const FILLER_CMD = 23;
export const FILLER_SEQ = 0x46494c4c;
/** A filler spans at least a record with an empty body, and at most the largest record Go reads. */
export const MIN_FILLER_SIZE = RECORD_OVERHEAD;
export const MAX_FILLER_SIZE = RECORD_OVERHEAD + MAX_BODY_SIZE;

const NOTE = Buffer.from('ims repair --damaged fill: damaged bytes replaced by this filler; ', 'ascii');

export function isFiller(msg: { cmd: number; seq: number }): boolean {
  return msg.cmd === FILLER_CMD && msg.seq === FILLER_SEQ;
}

/** Why no single filler can span `size` bytes, or null when one can. */
export function fillerSizeProblem(size: number): string | null {
  if (size < MIN_FILLER_SIZE) return `${size} bytes are fewer than the smallest record (${MIN_FILLER_SIZE})`;
  if (size > MAX_FILLER_SIZE)
    return `${size} bytes are more than the largest record Go reads (${MAX_FILLER_SIZE}): more than one record is damaged`;
  return null;
}

/** The filler record of exactly `size` bytes. */
export function encodeFiller(size: number): Buffer {
  const problem = fillerSizeProblem(size);
  if (problem) throw new RangeError(`no filler of ${size} bytes: ${problem}`);
  const body = Buffer.alloc(size - RECORD_OVERHEAD);
  NOTE.copy(body, 0, 0, Math.min(NOTE.length, body.length));
  return encodeRecord({ cmd: FILLER_CMD, seq: FILLER_SEQ, version: 0, flag: 0, body });
}
