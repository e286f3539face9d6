import type * as net from 'node:net';
import { JsonSocket } from '@nestjs/microservices';
import type { DropReason, InputBounds, PendingHolder } from './input-bounds.js';

/** JsonSocket's framing state, private in Nest 12's typings (checked to exist at construction). */
interface FramingState {
  buffer: string;
  contentLength: number | null;
}

/**
 * Nest's JSON-over-TCP framing with ims's input bounds. Nest refuses a frame only once its buffer has
 * grown past maxBufferSize; this refuses it as soon as its length is announced (a `999999999#` header
 * costs nothing), reports the bytes held for the unfinished frame to the shared budget after every read,
 * and closes the connection (destroy: a peer flooding us is not trusted to answer a FIN) with one log line.
 */
export class BoundedJsonSocket extends JsonSocket implements PendingHolder {
  readonly address: string;
  private dropped = false;

  constructor(
    socket: net.Socket,
    private readonly bounds: InputBounds,
    incompleteMessageTimeout: number,
  ) {
    // Nest's own check stays as a backstop for a header that never ends ('#' missing).
    super(socket, { maxBufferSize: bounds.maxFrameBytes + 32, incompleteMessageTimeout });
    if (!('buffer' in this) || !('contentLength' in this))
      throw new Error(
        '@nestjs/microservices JsonSocket no longer has buffer/contentLength; review BoundedJsonSocket',
      );
    this.address = `${socket.remoteAddress}:${socket.remotePort}`;
    bounds.rpcConnections++;
    socket.once('close', () => {
      bounds.rpcConnections--;
      bounds.hold(this, 0);
    });
  }

  private get framing(): FramingState {
    return this as unknown as FramingState;
  }

  protected override handleData(data: Buffer | string): void {
    if (this.dropped) return;
    super.handleData(data);
    const f = this.framing;
    if (f.contentLength !== null && f.contentLength > this.bounds.maxFrameBytes) {
      this.drop(
        'frame_too_large',
        `it announced a frame of ${f.contentLength} bytes; max_frame_bytes is ${this.bounds.maxFrameBytes}`,
      );
      return;
    }
    this.bounds.hold(this, f.buffer.length);
  }

  protected override handleDataError(e: unknown, options?: { destroy?: boolean }): void {
    const name = (e as Error)?.constructor?.name;
    if (name === 'MaxPacketLengthExceededException') {
      this.drop('frame_too_large', `${(e as Error).message} (max_frame_bytes=${this.bounds.maxFrameBytes})`);
    } else if (name === 'IncompleteMessageTimeoutException') {
      this.drop('stalled', (e as Error).message);
    } else {
      this.bounds.hold(this, 0);
      super.handleDataError(e, options);
    }
  }

  drop(reason: DropReason, detail: string): void {
    if (this.dropped) return;
    this.dropped = true;
    const f = this.framing;
    f.buffer = '';
    f.contentLength = null;
    this.bounds.hold(this, 0);
    this.bounds.noteDrop('rpc', this.address, reason, detail);
    this.socket.destroy();
  }
}
