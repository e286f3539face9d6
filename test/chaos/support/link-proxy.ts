/**
 * A TCP proxy for one directed link (client → node rpc, follower → master sync, node → etcd) that the
 * chaos tests control: forward, cut (RST every connection and refuse new ones, or a silent blackhole
 * that swallows bytes both ways and answers nothing), delay every chunk (order kept) and throttle.
 * Plain node:net; one proxy per link, so a fault hits exactly that link.
 */
import * as net from 'node:net';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

export type LinkMode = 'open' | 'reset' | 'blackhole';

/** Above this many queued bytes a direction stops reading its source (backpressure through the proxy). */
const HIGH_WATER = 4 * 1024 * 1024;
/** Throttled data goes out in pieces of this size, so the rate is smooth. */
const PIECE = 4 * 1024;

interface Item {
  chunk: Buffer | null; // null: the source ended (FIN), delayed like data
  at: number;
}

/** One direction of one proxied connection. */
class Pipe {
  private readonly queue: Item[] = [];
  private queued = 0;
  private pumping = false;

  constructor(
    private readonly from: net.Socket,
    private readonly to: net.Socket,
    private readonly link: LinkProxy,
    private readonly conn: Connection,
  ) {
    from.on('data', (chunk: Buffer) => this.push(chunk));
    from.on('end', () => this.push(null));
  }

  private push(chunk: Buffer | null): void {
    if (this.conn.swallowing) return; // blackhole: gone without a trace
    this.queue.push({ chunk, at: performance.now() + this.link.delayMs });
    this.queued += chunk?.length ?? 0;
    if (this.queued > HIGH_WATER) this.from.pause();
    void this.pump();
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.queue.length > 0 && !this.to.destroyed) {
        const wait = this.queue[0].at - performance.now();
        if (wait > 0) await sleep(wait);
        if (this.conn.swallowing) {
          this.queue.length = 0;
          this.queued = 0;
          break;
        }
        const { chunk } = this.queue.shift()!;
        if (chunk === null) {
          this.to.end();
          continue;
        }
        this.queued -= chunk.length;
        for (let off = 0; off < chunk.length && !this.to.destroyed;) {
          const rate = this.link.bytesPerSecond;
          const piece = rate > 0 ? chunk.subarray(off, off + PIECE) : chunk.subarray(off);
          off += piece.length;
          // A slow link: the piece arrives only after the time it takes to cross at that rate.
          if (rate > 0) await sleep((piece.length / rate) * 1000);
          if (this.conn.swallowing || this.to.destroyed) break;
          if (!this.to.write(piece)) await drained(this.to);
        }
        if (this.queued <= HIGH_WATER / 2 && this.from.isPaused()) this.from.resume();
      }
    } finally {
      this.pumping = false;
    }
  }
}

function drained(s: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    if (s.destroyed || !s.writable) return resolve();
    const done = () => {
      s.off('drain', done);
      s.off('close', done);
      resolve();
    };
    s.on('drain', done);
    s.on('close', done);
  });
}

class Connection {
  /** Set while the link is a blackhole: this connection's bytes are swallowed; reset when it heals. */
  swallowing = false;
  upstream: net.Socket | null = null;

  constructor(readonly downstream: net.Socket) {}

  reset(): void {
    for (const s of [this.downstream, this.upstream]) {
      if (s && !s.destroyed) s.resetAndDestroy();
    }
  }
}

export class LinkProxy {
  private readonly server: net.Server;
  private readonly conns = new Set<Connection>();
  private port = 0;
  mode: LinkMode = 'open';
  /** Added to every chunk in both directions (order kept). */
  delayMs = 0;
  /** Bytes per second in each direction (0: unlimited). */
  bytesPerSecond = 0;
  /** host:port connections are forwarded to; null: refused (RST) like a closed port. */
  target: string | null;
  /** Connections accepted so far (to prove a link is used). */
  accepted = 0;
  /** Told of every cut and heal (a scenario's event log). */
  log: ((text: string) => void) | null = null;

  private constructor(
    readonly name: string,
    target: string | null,
  ) {
    this.target = target;
    this.server = net.createServer((s) => this.accept(s));
  }

  static async start(name: string, target: string | null = null): Promise<LinkProxy> {
    const p = new LinkProxy(name, target);
    await new Promise<void>((resolve, reject) => {
      p.server.once('error', reject);
      p.server.listen(0, '127.0.0.1', () => resolve());
    });
    p.port = (p.server.address() as net.AddressInfo).port;
    return p;
  }

  /** Where the other side connects to reach the target through this link. */
  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  get openConnections(): number {
    return this.conns.size;
  }

  private accept(downstream: net.Socket): void {
    this.accepted++;
    downstream.on('error', () => undefined);
    const conn = new Connection(downstream);
    if (this.mode === 'reset' || this.target === null) {
      downstream.resetAndDestroy();
      return;
    }
    this.conns.add(conn);
    downstream.on('close', () => {
      this.conns.delete(conn);
      conn.reset();
    });
    if (this.mode === 'blackhole') {
      // Accepted (as a SYN lost in a partition would look to nobody) but nothing ever goes through.
      conn.swallowing = true;
      downstream.on('data', () => undefined);
      return;
    }
    const i = this.target.lastIndexOf(':');
    const upstream = net.connect({ host: this.target.slice(0, i), port: Number(this.target.slice(i + 1)) });
    conn.upstream = upstream;
    upstream.setNoDelay(true);
    downstream.setNoDelay(true);
    upstream.on('error', () => undefined);
    upstream.on('close', () => conn.reset());
    new Pipe(downstream, upstream, this, conn);
    new Pipe(upstream, downstream, this, conn);
  }

  /** Cuts the link: RST every connection and refuse new ones ('reset'), or swallow everything ('blackhole'). */
  cut(mode: 'reset' | 'blackhole' = 'reset'): void {
    this.log?.(`link ${this.name} cut (${mode})`);
    this.mode = mode;
    for (const c of this.conns) {
      if (mode === 'reset') c.reset();
      else c.swallowing = true;
    }
  }

  /**
   * Heals the link: new connections go through again. A connection that lost bytes in a blackhole cannot
   * go on (its byte stream has a hole), so it is reset now, as TCP would once its retransmits gave up.
   */
  heal(): void {
    if (this.mode !== 'open' || this.delayMs > 0 || this.bytesPerSecond > 0)
      this.log?.(`link ${this.name} healed`);
    this.mode = 'open';
    this.delayMs = 0;
    this.bytesPerSecond = 0;
    for (const c of this.conns) if (c.swallowing) c.reset();
  }

  /** Points the link at a new target (a restarted node's new port); existing connections are reset. */
  retarget(target: string | null): void {
    this.target = target;
    for (const c of this.conns) c.reset();
  }

  async close(): Promise<void> {
    for (const c of this.conns) c.reset();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
