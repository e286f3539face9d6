/**
 * Filler records: what `ims repair --damaged fill` writes over a damaged record, so that the whole
 * records after it stay readable. A filler is one ordinary record of exactly the damaged span's length:
 *
 *   MAGIC | length | seq 0x46494c4c ("FILL") | cmd 36 | version 0 | flag 0 | 0 | zero bytes | MAGIC
 *
 * Why cmd 36 (MSG_NOTIFICATION): Go ims 2.0 parses it as a `SystemMessage`, which takes any body and
 * writes it back unchanged, so Go reads the record like any other and passes it over: its index
 * rebuild and replay act only on cmds 250, 252 and 254; SyncMessage and GetLatestMessage do not return
 * cmd 36; a queue walk that reaches it as an entry ends there ("invalid message cmd"). A Go slave
 * re-encodes every record it receives, and 36 comes out byte for byte, so the slave's ids stay the
 * master's. (Cmd 23, Go's `IgnoreMessage`, would be re-encoded with an empty body and shift every id
 * after it; an unknown cmd with a body stops Go's rebuild.) Saves of cmd 36 are ordinary
 * notifications: every save writes seq 0, and no save sets a seq, so only the seq marks a filler.
 * Pure functions only.
 */
import { MAX_BODY_SIZE, RECORD_OVERHEAD } from './constants.js';
import { encodeRecord } from './record.js';

export const FILLER_CMD = 36;
export const FILLER_SEQ = 0x46494c4c;
/** A filler spans at least a record with an empty body, and at most the largest record Go reads. */
export const MIN_FILLER_SIZE = RECORD_OVERHEAD;
export const MAX_FILLER_SIZE = RECORD_OVERHEAD + MAX_BODY_SIZE;

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
  // Zeros: a Go server's SyncGroupMessage returns what a group entry points at, so a filled super-group
  // message reaches a Go im server as an empty-looking notification, never as text.
  const body = Buffer.alloc(size - RECORD_OVERHEAD);
  return encodeRecord({ cmd: FILLER_CMD, seq: FILLER_SEQ, version: 0, flag: 0, body });
}
