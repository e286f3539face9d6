import { MAX_SYNC_FRAME_BODY } from '../format/constants.js';
import {
  SYNC_FRAME_HEADER_SIZE,
  decodeFrameHeader,
  frameHeaderProblem,
  type SyncFrame,
  type SyncFrameHeader,
} from '../format/sync-frames.js';

/** A frame that cannot be accepted: the link is closed with this message. */
export class SyncProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SyncProtocolError';
  }
}

/**
 * Cuts frames out of socket chunks. Chunks are kept in a list and joined once per frame, so a 16 MiB
 * batch arriving in 64 KiB pieces is copied once, not once per piece.
 */
export class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private header: SyncFrameHeader | null = null;

  constructor(
    private readonly maxBody: number = MAX_SYNC_FRAME_BODY,
    /** Checks a header before its body is waited for (e.g. a master accepts only SYNC_BEGIN). */
    private readonly checkHeader?: (h: SyncFrameHeader) => string | null,
  ) {}

  get bufferedBytes(): number {
    return this.buffered;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  private take(n: number): Buffer {
    const all = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks, this.buffered);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.buffered = rest.length;
    return out;
  }

  /** The next whole frame, or null when more bytes are needed. Throws SyncProtocolError on a bad header. */
  next(): SyncFrame | null {
    if (!this.header) {
      if (this.buffered < SYNC_FRAME_HEADER_SIZE) return null;
      const h = decodeFrameHeader(this.take(SYNC_FRAME_HEADER_SIZE));
      const problem = frameHeaderProblem(h, this.maxBody) ?? this.checkHeader?.(h) ?? null;
      if (problem) throw new SyncProtocolError(problem);
      this.header = h;
    }
    if (this.buffered < this.header.length) return null;
    const h = this.header;
    this.header = null;
    // Copy so the frame does not pin a larger joined buffer.
    const body = Buffer.from(this.take(h.length));
    return { ...h, body };
  }
}
