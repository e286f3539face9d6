/**
 * What a server-side connection of either Go protocol (gorpc, net/rpc) does alike once its handshake is
 * past: gob values read up to the in-flight limit, calls run through Nest concurrently and answered as
 * they finish, the answers ready in one turn of the event loop packed into one write, reading paused
 * while too many calls are in flight or too many reply bytes wait for the client, and the teardown.
 * A subclass reads its handshake and turns gob values into calls and answers.
 */
import type * as net from 'node:net';
import {
  GobError,
  GobLimitError,
  GobStreamDecoder,
  GobStreamEncoder,
  SKIPPED,
  type Decoded,
  type DecodePlan,
} from './gob/gob.js';
import type { CallOutcome, GoConnection } from './go-listener.server.js';
import type { DropReason, PendingHolder } from './input-bounds.js';
import { WriteBatch } from './write-batch.js';

export interface GoConnectionOptions {
  /** Runs one call through the Nest handler of `pattern`. */
  dispatch: (pattern: string, payload: unknown, remote: string) => Promise<CallOutcome>;
  log: (message: string) => void;
  /** Largest gob message accepted. */
  maxMessage: number;
  /** Calls in flight on one connection before it stops reading. */
  maxInFlight: number;
  /** Bytes queued for the client before the connection stops reading. */
  maxQueuedOutput: number;
  /** How long a new connection may take to make its handshake. */
  handshakeMs: number;
  /** An unfinished gob message that receives nothing this long is dropped (incomplete_frame_timeout_ms). */
  stallMs?: number;
  /** The process's input budget (max_pending_bytes) and drop counters; none in unit tests. */
  bounds?: ConnectionBounds;
}

/** The parts of InputBounds a connection uses (the shared budget and the drop log/counter). */
export interface ConnectionBounds {
  hold(holder: PendingHolder, bytes: number): void;
  noteDrop(what: string, address: string, reason: DropReason, detail: string): void;
}

/**
 * Most list elements one request may hold. ims's largest request (SavePeerGroupMessage) carries at most
 * MAX_MEMBERS (10,000) members; a value asking for more is refused before any of it is built.
 */
export const MAX_REQUEST_ELEMENTS = 1 << 16;

/**
 * Gob bytes one connection decodes in one turn of the event loop before it lets the others (and the
 * health check) run: decoding costs at most a few operations per byte, so this bounds each stall.
 */
const BYTES_PER_TURN = 1 << 20;

/** How a protocol's connections name themselves. */
export interface GoProtocol {
  /** In log lines (`gorpc`). */
  label: string;
  /** What a connection that never made its handshake failed to send (`no handshake byte`). */
  handshake: string;
  /** The interface type names a client may send. */
  names: ReadonlySet<string>;
}

/**
 * The input bounds are those of the Nest transport: max_frame_bytes per gob message (refused as soon as
 * its length is read), the bytes of unfinished messages counted against max_pending_bytes with all other
 * connections', and an unfinished message that stops moving dropped after incomplete_frame_timeout_ms.
 */
export abstract class GoCallConnection<O extends GoConnectionOptions = GoConnectionOptions>
  implements GoConnection, PendingHolder
{
  readonly address: string;
  protected readonly decoder: GobStreamDecoder;
  protected readonly encoder = new GobStreamEncoder();
  protected closed = false;
  protected paused = false;
  private inFlight = 0;
  /** The rest of the buffered input waits for the next turn of the event loop. */
  private yielded = false;
  private handshakeTimer?: NodeJS.Timeout;
  private stallTimer?: NodeJS.Timeout;
  // Answers finishing in the same turn of the event loop join one write.
  private readonly answers = new WriteBatch((data) => {
    if (this.closed) return;
    this.write(data);
    this.updateFlow();
  });

  constructor(
    readonly socket: net.Socket,
    protected readonly options: O,
    private readonly protocol: GoProtocol,
    private readonly onClose: (c: GoConnection) => void,
  ) {
    this.decoder = new GobStreamDecoder({
      maxMessage: options.maxMessage,
      names: protocol.names,
      maxElements: MAX_REQUEST_ELEMENTS,
    });
    this.address = `${socket.remoteAddress}:${socket.remotePort}`;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onSocketData(chunk));
    socket.on('error', () => this.teardown());
    socket.on('close', () => this.teardown());
    socket.on('drain', () => this.maybeResume());
    this.handshakeTimer = setTimeout(
      () => this.fail(`${protocol.handshake} within ${options.handshakeMs} ms`),
      options.handshakeMs,
    );
    this.handshakeTimer.unref();
  }

  /** Bytes from the socket: the handshake, then the gob stream, handed to `readGob`. */
  protected abstract onSocketData(chunk: Buffer): void;

  /** What the next top-level value is decoded into (null: read and dropped). */
  protected abstract plan: DecodePlan;

  /**
   * One top-level gob value, decoded as `plan` said (SKIPPED: dropped): (part of) a call to start.
   * Throws GobError for one that is not.
   */
  protected abstract onValue(value: Decoded | typeof SKIPPED): void;

  protected handshakeDone(): void {
    clearTimeout(this.handshakeTimer);
  }

  protected readGob(chunk: Buffer): void {
    if (this.closed) return;
    this.decoder.push(chunk);
    this.drain();
  }

  /** Reads every complete value buffered, up to the in-flight limit and this turn's share of work. */
  private drain(): void {
    if (this.yielded) return;
    const start = this.decoder.consumed;
    while (!this.closed && this.inFlight < this.options.maxInFlight) {
      if (this.decoder.consumed - start >= BYTES_PER_TURN) {
        // The rest waits for the next turn, after every other connection's.
        this.yielded = true;
        setImmediate(() => {
          this.yielded = false;
          this.drain();
        });
        break;
      }
      let value: Decoded | typeof SKIPPED | undefined;
      try {
        value = this.decoder.nextAs(this.plan);
      } catch (err) {
        if (err instanceof GobError) return this.badGob(err);
        throw err;
      }
      if (value === undefined) {
        // A value spread over several messages, each under the limit, still must not grow without end.
        if (this.decoder.bufferedBytes > 2 * this.options.maxMessage) return this.tooLarge();
        break;
      }
      try {
        this.onValue(value);
      } catch (err) {
        if (err instanceof GobError) return this.fail(`bad request: ${err.message}`);
        throw err;
      }
    }
    this.afterRead();
  }

  protected badGob(err: GobError): void {
    if (!(err instanceof GobLimitError)) return this.fail(`bad gob data: ${err.message}`);
    this.drop(
      'frame_too_large',
      `it announced a gob message of ${err.length} bytes; max_frame_bytes is ${err.limit}`,
    );
  }

  protected tooLarge(): void {
    this.drop(
      'frame_too_large',
      `it sent a value of more than ${2 * this.options.maxMessage} bytes; max_frame_bytes is ${this.options.maxMessage}`,
    );
  }

  /** After a read: report the bytes held to the budget, watch an unfinished message, apply flow control. */
  protected afterRead(): void {
    if (this.closed) return;
    this.options.bounds?.hold(this, this.decoder.bufferedBytes);
    // Over the budget, the connection dropped may be this one.
    if (this.closed) return;
    this.updateFlow();
    clearTimeout(this.stallTimer);
    const stallMs = this.options.stallMs;
    if (stallMs !== undefined && !this.paused && this.decoder.bufferedBytes > 0) {
      this.stallTimer = setTimeout(
        () =>
          this.drop(
            'stalled',
            `its unfinished gob message (${this.decoder.bufferedBytes} bytes held) received nothing for ${stallMs} ms (incomplete_frame_timeout_ms)`,
          ),
        stallMs,
      );
      this.stallTimer.unref();
    }
  }

  /** Closes the connection for one of the input bounds (counted and logged as the Nest transport's). */
  drop(reason: DropReason, detail: string): void {
    if (this.closed) return;
    const label = this.protocol.label;
    if (this.options.bounds) this.options.bounds.noteDrop(label, this.address, reason, detail);
    else this.options.log(`${label} connection from ${this.address} closed: ${detail}`);
    this.teardown();
  }

  /**
   * Runs a call through Nest; `answer` gets the outcome with the reply made a Go value by `method.reply`
   * (one it cannot convert is an internal error). Reading goes on after each answer.
   */
  protected run<R>(
    method: { pattern: string; reply: (reply: unknown) => R },
    payload: unknown,
    answer: (outcome: CallOutcome<R>) => void,
  ): void {
    const internal = (err: unknown) => `${method.pattern}: internal error: ${(err as Error)?.message}`;
    this.inFlight++;
    this.options.dispatch(method.pattern, payload, this.address).then(
      (outcome) => {
        this.inFlight--;
        if (!outcome.ok) answer(outcome);
        else {
          let converted: CallOutcome<R>;
          try {
            converted = { ok: true, reply: method.reply(outcome.reply) };
          } catch (err) {
            converted = { ok: false, message: internal(err) };
          }
          answer(converted);
        }
        this.drain();
      },
      (err: unknown) => {
        this.inFlight--;
        answer({ ok: false, message: internal(err) });
        this.drain();
      },
    );
  }

  /** Queues an answer's bytes. */
  protected send(...bytes: Buffer[]): void {
    this.answers.push(...bytes);
  }

  protected write(data: Buffer): void {
    this.socket.write(data);
  }

  private get busy(): boolean {
    return (
      this.inFlight >= this.options.maxInFlight || this.socket.writableLength > this.options.maxQueuedOutput
    );
  }

  /** Stops reading while too many calls are in flight or too many reply bytes wait for the client. */
  protected updateFlow(): void {
    if (this.closed) return;
    const busy = this.busy;
    if (busy && !this.paused) {
      this.paused = true;
      this.pauseReading();
    } else if (!busy && this.paused) this.maybeResume();
  }

  private maybeResume(): void {
    if (this.closed || !this.paused || this.busy) return;
    this.paused = false;
    this.resumeReading();
    this.drain();
  }

  protected pauseReading(): void {
    // A connection that is not read from is not stalling.
    clearTimeout(this.stallTimer);
    this.socket.pause();
  }

  protected resumeReading(): void {
    this.socket.resume();
  }

  /** Closes the connection for input it cannot serve, saying why (nothing more is written to it). */
  fail(reason: string): void {
    if (this.closed) return;
    this.options.log(`${this.protocol.label} ${this.address}: ${reason}; connection closed`);
    this.teardown();
  }

  teardown(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.handshakeTimer);
    clearTimeout(this.stallTimer);
    this.options.bounds?.hold(this, 0);
    this.answers.clear();
    this.socket.destroy();
    this.released();
    this.onClose(this);
  }

  /** Frees what the protocol holds besides the socket. */
  protected released(): void {}
}
