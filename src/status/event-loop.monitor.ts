import { monitorEventLoopDelay, performance, type IntervalHistogram } from 'node:perf_hooks';
import { Injectable, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';

const TICK_MS = 500;
const RESOLUTION_MS = 10;

/**
 * Node's stand-in for Go's goroutine figures: event-loop delay (a histogram, reset every minute so it
 * shows recent behaviour) and the largest stall seen by a half-second ticker since the last minute.
 */
@Injectable()
export class EventLoopMonitor implements OnModuleInit, OnApplicationShutdown {
  private histogram: IntervalHistogram | null = null;
  private ticker: NodeJS.Timeout | null = null;
  private lastTick = 0;
  private windowStart = 0;
  private maxStallMs = 0;
  private previousMaxStallMs = 0;
  private elu = performance.eventLoopUtilization();

  onModuleInit(): void {
    this.histogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
    this.histogram.enable();
    this.lastTick = this.windowStart = Date.now();
    this.ticker = setInterval(() => this.tick(), TICK_MS);
    this.ticker.unref();
  }

  private tick(): void {
    const now = Date.now();
    this.maxStallMs = Math.max(this.maxStallMs, now - this.lastTick - TICK_MS);
    this.lastTick = now;
    if (now - this.windowStart >= 60_000) {
      this.previousMaxStallMs = this.maxStallMs;
      this.maxStallMs = 0;
      this.windowStart = now;
      this.histogram?.reset();
      this.elu = performance.eventLoopUtilization();
    }
  }

  /** The longest the loop was blocked recently (this window and the previous one), ms. */
  get recentStallMs(): number {
    const pending = Math.max(0, Date.now() - this.lastTick - TICK_MS);
    return Math.max(this.maxStallMs, this.previousMaxStallMs, pending);
  }

  snapshot(): Record<string, number> {
    const h = this.histogram;
    // The histogram's samples include its own timer period; what is left is the delay.
    const ms = (ns: number) => Math.max(0, Math.round(ns / 1e4) / 100 - RESOLUTION_MS);
    return {
      delay_mean_ms: h && h.count > 0 ? ms(h.mean) : 0,
      delay_p50_ms: h && h.count > 0 ? ms(h.percentile(50)) : 0,
      delay_p99_ms: h && h.count > 0 ? ms(h.percentile(99)) : 0,
      delay_max_ms: h && h.count > 0 ? ms(h.max) : 0,
      recent_stall_ms: this.recentStallMs,
      utilization: Math.round(performance.eventLoopUtilization(this.elu).utilization * 1000) / 1000,
    };
  }

  onApplicationShutdown(): void {
    if (this.ticker) clearInterval(this.ticker);
    this.histogram?.disable();
  }
}
