import type * as net from 'node:net';
import { Injectable, Logger } from '@nestjs/common';
import { ImsConfig } from '../config/ims-config.js';

/** Something holding bytes of an unfinished frame, which can be dropped to free them. */
export interface PendingHolder {
  readonly address: string;
  drop(reason: DropReason, detail: string): void;
}

export type DropReason = 'frame_too_large' | 'over_budget' | 'stalled' | 'max_connections';

/**
 * The bounds on what unauthenticated peers can make the server hold (issue: a few connections each
 * sending a huge unfinished frame exhausted the heap): a frame longer than `max_frame_bytes` closes its
 * connection; the bytes held for unfinished frames across all connections stay under
 * `max_pending_bytes`, the largest holders being dropped first; `max_connections` per listener.
 * One instance per process, shared by the RPC listener and the metrics.
 */
@Injectable()
export class InputBounds {
  private readonly logger = new Logger('Input');
  private readonly held = new Map<PendingHolder, number>();
  /** Characters held for unfinished frames, all connections together. */
  pendingTotal = 0;
  /** Connections dropped, by reason (ims_input_dropped_total). */
  readonly dropped: Record<DropReason, number> = {
    frame_too_large: 0,
    over_budget: 0,
    stalled: 0,
    max_connections: 0,
  };
  /** Open RPC connections. */
  rpcConnections = 0;

  constructor(readonly config: ImsConfig) {}

  get maxFrameBytes(): number {
    return this.config.max_frame_bytes;
  }

  /** `holder` now holds `chars` for an unfinished frame (0: none). Past the budget the largest are dropped. */
  hold(holder: PendingHolder, chars: number): void {
    const before = this.held.get(holder) ?? 0;
    if (chars === before) return;
    if (chars === 0) this.held.delete(holder);
    else this.held.set(holder, chars);
    this.pendingTotal += chars - before;
    if (chars > before && this.pendingTotal > this.config.max_pending_bytes) this.enforceBudget();
  }

  private enforceBudget(): void {
    const budget = this.config.max_pending_bytes;
    const largestFirst = [...this.held].sort((a, b) => b[1] - a[1]);
    for (const [holder, chars] of largestFirst) {
      if (this.pendingTotal <= budget) break;
      holder.drop(
        'over_budget',
        `its unfinished frame (${chars} bytes) is the largest while unfinished frames hold ` +
          `${this.pendingTotal} bytes, over max_pending_bytes=${budget}`,
      );
      this.hold(holder, 0);
    }
  }

  /** Counts and logs a dropped connection (one line: who, why, which setting). */
  noteDrop(what: string, address: string, reason: DropReason, detail: string): void {
    this.dropped[reason]++;
    this.logger.warn(`${what} connection from ${address} closed: ${detail}`);
  }

  /**
   * Applies max_connections to a listener: the kernel-accepted connection beyond it is closed at once
   * (Node's server.maxConnections) and logged, at most one line a second under a flood.
   */
  limitConnections(server: net.Server, what: string): void {
    const max = this.config.max_connections;
    server.maxConnections = max;
    let lastLog = 0;
    let unlogged = 0;
    server.on('drop', (info?: net.DropArgument) => {
      this.dropped.max_connections++;
      unlogged++;
      const now = Date.now();
      if (now - lastLog < 1000) return;
      lastLog = now;
      const more = unlogged > 1 ? ` (${unlogged} refused since the last line)` : '';
      unlogged = 0;
      this.logger.warn(
        `${what} connection from ${info?.remoteAddress ?? '?'}:${info?.remotePort ?? '?'} refused: ` +
          `max_connections=${max} reached${more}`,
      );
    });
  }
}

/** The parts of InputBounds a connection uses (the shared budget and the drop log/counter). */
export interface PendingBudget {
  hold(holder: PendingHolder, bytes: number): void;
}

/**
 * One connection's unfinished frame as the input bounds see it, for the listeners that are not Nest's
 * (the sync port): its bytes counted against max_pending_bytes with every other connection's, and the
 * connection dropped when the unfinished frame receives nothing for incomplete_frame_timeout_ms.
 */
export class UnfinishedFrameWatch {
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly holder: PendingHolder,
    private readonly budget: PendingBudget | undefined,
    private readonly stallMs: number | undefined,
  ) {}

  /** After a read: `bytes` of an unfinished frame are held (0: none). */
  update(bytes: number): void {
    clearTimeout(this.timer);
    this.budget?.hold(this.holder, bytes);
    if (bytes === 0 || !this.stallMs) return;
    const ms = this.stallMs;
    this.timer = setTimeout(
      () =>
        this.holder.drop(
          'stalled',
          `its unfinished frame (${bytes} bytes held) received nothing for ${ms} ms (incomplete_frame_timeout_ms)`,
        ),
      ms,
    );
    this.timer.unref();
  }

  /** Not reading (paused) or closed: nothing is stalling. */
  pause(): void {
    clearTimeout(this.timer);
  }

  stop(): void {
    clearTimeout(this.timer);
    this.budget?.hold(this.holder, 0);
  }
}
