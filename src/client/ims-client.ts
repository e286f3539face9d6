import type * as tls from 'node:tls';
import { firstValueFrom, throwError, timeout } from 'rxjs';
import {
  RpcPattern,
  type RpcPatternName,
  type WireHistoryMessage,
  type WireInt64,
  type WireLatestReply,
  type WireNewCountReply,
  type WirePingReply,
  type WireSavePeerGroupReply,
  type WireSavePeerMessagesReply,
  type WireSaveReply,
  type WireSyncReply,
} from './wire.js';
import { refusalKind, type RefusalKind } from '../format/refusals.js';
import { TcpLink } from './tcp-link.js';

/** A 64-bit id as a caller may give it: a safe-integer number, a bigint or a decimal string. */
export type Int64Input = number | bigint | string;

export interface HistoryMessage {
  msgId: number;
  deviceId: bigint;
  cmd: number;
  raw: Buffer;
}

export interface SaveReply {
  msgId: number;
  prevMsgId: number;
}

export interface SyncReply {
  messages: HistoryMessage[];
  lastMsgId: number;
  hasMore: boolean;
}

export interface ImsClientOptions {
  host: string;
  port: number;
  /** Per-request timeout in ms (default 10000). */
  timeoutMs?: number;
  /**
   * Send concurrent savePeerMessage calls together as one SavePeerMessages request (default true). Calls
   * made in the same turn of the event loop go out together, up to `maxBatch` calls or 1 MiB of bodies;
   * each call still gets its own result or error. A server without SavePeerMessages gets single calls.
   */
  batchSaves?: boolean;
  /** Most calls in one batch (default 500, at most 1000). */
  maxBatch?: number;
  /**
   * Connect over TLS with these tls.connect options (`ca` to trust the server's CA; `cert` and `key` when the
   * server requires client certificates, i.e. has tls_ca). Without it the connection is plain TCP.
   */
  tls?: tls.ConnectionOptions;
}

/** Bodies (base64 characters) above which a batch is sent at once. */
const MAX_BATCH_BODY_CHARS = 1 << 20;
const SERVER_MAX_BATCH = 1000;

interface WireSavePeerMessage {
  appId: WireInt64;
  uid: WireInt64;
  deviceId: WireInt64;
  cmd: number;
  raw: string;
}

interface QueuedSave {
  payload: WireSavePeerMessage;
  resolve: (r: SaveReply) => void;
  reject: (err: Error) => void;
}

/** Connecting failed: the request never reached a server. */
const CONNECT_FAILED =
  /\b(?:ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN|TLS handshake failed)\b/;
/** The connection went away while the request was out: a save may have been carried out. */
const CONNECTION_LOST = /\b(?:Connection closed|ECONNRESET|EPIPE)\b/;

const isSave = (pattern: string) => pattern.startsWith('Save');

/**
 * The server refused a request, or the connection failed; `message` names the pattern and what was
 * wrong. For a save, `notWritten` and `mayBeStored` say what the caller may do (see the README's table
 * of cluster errors): send a not-written save again; never simply resend one that may be stored.
 */
export class ImsRpcError extends Error {
  constructor(
    readonly pattern: RpcPatternName,
    message: string,
  ) {
    super(message);
    this.name = 'ImsRpcError';
  }

  /** The server's refusal kind by its stable sentence (src/format/refusals.ts), or null. */
  get refusal(): RefusalKind | null {
    return refusalKind(this.message);
  }

  /** Provably not written: refused before any write, or no connection could be made. Safe to retry. */
  get notWritten(): boolean {
    return this.refusal === 'not-written' || CONNECT_FAILED.test(this.message);
  }

  /**
   * A save that was (or may have been) written but not acknowledged: the server said so, or the
   * connection was lost while it was out. It may appear in the queue later, or be cut by a failover.
   */
  get mayBeStored(): boolean {
    if (this.refusal === 'may-be-stored') return true;
    return isSave(this.pattern) && this.refusal === null && CONNECTION_LOST.test(this.message);
  }
}

/** No answer within the timeout. The request may still have been carried out (a save is not undone). */
export class ImsTimeoutError extends Error {
  constructor(
    readonly pattern: RpcPatternName,
    readonly timeoutMs: number,
  ) {
    super(`${pattern}: no answer from ims within ${timeoutMs} ms`);
    this.name = 'ImsTimeoutError';
  }

  readonly notWritten = false;

  /** A save that timed out may have been stored. */
  get mayBeStored(): boolean {
    return isSave(this.pattern);
  }
}

/** A whole batch's failure, told to each call as its own SavePeerMessage failure. */
function asSingleSaveError(err: Error): Error {
  if (err instanceof ImsTimeoutError) return new ImsTimeoutError(RpcPattern.SavePeerMessage, err.timeoutMs);
  if (err instanceof ImsRpcError) {
    const text = err.message.replace(`${RpcPattern.SavePeerMessages}:`, `${RpcPattern.SavePeerMessage}:`);
    return new ImsRpcError(RpcPattern.SavePeerMessage, text);
  }
  return err;
}

function int64Out(value: Int64Input): WireInt64 {
  if (typeof value === 'bigint')
    return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER)
      ? Number(value)
      : value.toString();
  return value;
}

function historyIn(m: WireHistoryMessage): HistoryMessage {
  return {
    msgId: Number(m.msgId),
    deviceId: BigInt(m.deviceId),
    cmd: m.cmd,
    raw: Buffer.from(m.raw, 'base64'),
  };
}

function syncIn(r: WireSyncReply): SyncReply {
  return { messages: r.messages.map(historyIn), lastMsgId: Number(r.lastMsgId), hasMore: r.hasMore };
}

/**
 * Typed client for IM servers, over Nest's TCP transport (ClientTCP): one connection carrying any number
 * of requests at once; each reply is matched to its request by the packet id, so callers may pipeline.
 *
 * Connection and reconnection: the connection opens on connect() or lazily on the first request. When it
 * drops (server restart, network), every request still waiting fails at once with
 * `ImsRpcError('... Connection closed')`, and the next request opens a new connection; a refused connect
 * fails that request (ECONNREFUSED) and the one after tries again. Requests are never retried by the client,
 * because a save that reached the server before the drop would be stored twice; callers decide. Each
 * request fails with ImsTimeoutError after `timeoutMs` (default 10 s) without closing the connection.
 */
export class ImsClient {
  private readonly proxy: TcpLink;
  private readonly timeoutMs: number;
  private batchSaves: boolean;
  private readonly maxBatch: number;
  private queued: QueuedSave[] = [];
  private queuedChars = 0;
  private flushScheduled = false;

  constructor(options: ImsClientOptions) {
    this.proxy = new TcpLink({
      host: options.host,
      port: options.port,
      ...(options.tls ? { tlsOptions: options.tls } : {}),
    });
    this.timeoutMs = options.timeoutMs ?? 10000;
    this.batchSaves = options.batchSaves ?? true;
    const maxBatch = options.maxBatch ?? 500;
    if (!Number.isInteger(maxBatch) || maxBatch < 1 || maxBatch > SERVER_MAX_BATCH)
      throw new RangeError(`maxBatch must be an integer from 1 to ${SERVER_MAX_BATCH}, not ${maxBatch}`);
    this.maxBatch = maxBatch;
  }

  async connect(): Promise<void> {
    await this.proxy.connect();
  }

  /** Closes the connection. Saves still queued are sent first and, like every request still waiting, fail. */
  async close(): Promise<void> {
    this.flushSaves();
    this.proxy.close();
  }

  private async call<T>(pattern: RpcPatternName, payload: object): Promise<T> {
    try {
      return await firstValueFrom(
        this.proxy.send<T>(pattern, payload).pipe(
          timeout({
            first: this.timeoutMs,
            with: () => throwError(() => new ImsTimeoutError(pattern, this.timeoutMs)),
          }),
        ),
      );
    } catch (err) {
      if (err instanceof ImsTimeoutError) throw err;
      const message: unknown =
        typeof err === 'string' ? err : ((err as { message?: unknown })?.message ?? err);
      // Server errors already start with the pattern; transport errors (Connection closed, ECONNREFUSED) do not.
      const text = typeof message === 'string' ? message : JSON.stringify(message);
      throw new ImsRpcError(pattern, text.startsWith(`${pattern}:`) ? text : `${pattern}: ${text}`);
    }
  }

  /** Stores a message in a user's queue; with `batchSaves`, together with other calls of the same tick. */
  savePeerMessage(r: {
    appId: Int64Input;
    uid: Int64Input;
    deviceId: Int64Input;
    cmd: number;
    raw: Buffer;
  }): Promise<SaveReply> {
    const payload: WireSavePeerMessage = {
      appId: int64Out(r.appId),
      uid: int64Out(r.uid),
      deviceId: int64Out(r.deviceId),
      cmd: r.cmd,
      raw: r.raw.toString('base64'),
    };
    if (!this.batchSaves) return this.saveOne(payload);
    return new Promise<SaveReply>((resolve, reject) => {
      this.queued.push({ payload, resolve, reject });
      this.queuedChars += payload.raw.length;
      if (this.queued.length >= this.maxBatch || this.queuedChars >= MAX_BATCH_BODY_CHARS) this.flushSaves();
      else if (!this.flushScheduled) {
        this.flushScheduled = true;
        // After the current I/O callbacks: replies that arrive together release callers together.
        setImmediate(() => {
          this.flushScheduled = false;
          this.flushSaves();
        });
      }
    });
  }

  private async saveOne(payload: WireSavePeerMessage): Promise<SaveReply> {
    const res = await this.call<WireSaveReply>(RpcPattern.SavePeerMessage, payload);
    return { msgId: res.msgId, prevMsgId: res.prevMsgId };
  }

  private flushSaves(): void {
    const batch = this.queued;
    if (batch.length === 0) return;
    this.queued = [];
    this.queuedChars = 0;
    if (batch.length === 1) {
      this.saveOne(batch[0].payload).then(batch[0].resolve, batch[0].reject);
      return;
    }
    this.call<WireSavePeerMessagesReply>(RpcPattern.SavePeerMessages, {
      messages: batch.map((q) => q.payload),
    }).then(
      (res) =>
        batch.forEach((q, i) => {
          const o = res.results?.[i];
          if (o && 'msgId' in o) q.resolve({ msgId: o.msgId, prevMsgId: o.prevMsgId });
          else
            q.reject(new ImsRpcError(RpcPattern.SavePeerMessage, o?.error ?? 'SavePeerMessage: no result'));
        }),
      (err: Error) => {
        if (err instanceof ImsRpcError && err.message.includes('no matching message handler')) {
          // An older server: nothing was stored; send each call alone from now on.
          this.batchSaves = false;
          for (const q of batch) this.saveOne(q.payload).then(q.resolve, q.reject);
          return;
        }
        const single = asSingleSaveError(err);
        for (const q of batch) q.reject(single);
      },
    );
  }

  async saveGroupMessage(r: {
    appId: Int64Input;
    groupId: Int64Input;
    deviceId: Int64Input;
    cmd: number;
    raw: Buffer;
  }): Promise<SaveReply> {
    const res = await this.call<WireSaveReply>(RpcPattern.SaveGroupMessage, {
      appId: int64Out(r.appId),
      groupId: int64Out(r.groupId),
      deviceId: int64Out(r.deviceId),
      cmd: r.cmd,
      raw: r.raw.toString('base64'),
    });
    return { msgId: res.msgId, prevMsgId: res.prevMsgId };
  }

  /** One message stored once and entered into every member's queue; one reply per member, in order. */
  async savePeerGroupMessage(r: {
    appId: Int64Input;
    members: Int64Input[];
    deviceId: Int64Input;
    cmd: number;
    raw: Buffer;
  }): Promise<{ messageIds: SaveReply[] }> {
    const res = await this.call<WireSavePeerGroupReply>(RpcPattern.SavePeerGroupMessage, {
      appId: int64Out(r.appId),
      members: r.members.map(int64Out),
      deviceId: int64Out(r.deviceId),
      cmd: r.cmd,
      raw: r.raw.toString('base64'),
    });
    return { messageIds: res.messageIds.map((s) => ({ msgId: s.msgId, prevMsgId: s.prevMsgId })) };
  }

  async syncMessage(r: {
    appId: Int64Input;
    uid: Int64Input;
    deviceId: Int64Input;
    lastMsgId: Int64Input;
  }): Promise<SyncReply> {
    return syncIn(
      await this.call<WireSyncReply>(RpcPattern.SyncMessage, {
        appId: int64Out(r.appId),
        uid: int64Out(r.uid),
        deviceId: int64Out(r.deviceId),
        lastMsgId: int64Out(r.lastMsgId),
      }),
    );
  }

  async syncGroupMessage(r: {
    appId: Int64Input;
    uid: Int64Input;
    deviceId: Int64Input;
    groupId: Int64Input;
    lastMsgId: Int64Input;
    timestamp: number;
  }): Promise<SyncReply> {
    return syncIn(
      await this.call<WireSyncReply>(RpcPattern.SyncGroupMessage, {
        appId: int64Out(r.appId),
        uid: int64Out(r.uid),
        deviceId: int64Out(r.deviceId),
        groupId: int64Out(r.groupId),
        lastMsgId: int64Out(r.lastMsgId),
        timestamp: r.timestamp,
      }),
    );
  }

  async getNewCount(r: {
    appId: Int64Input;
    uid: Int64Input;
    deviceId: Int64Input;
    lastMsgId: Int64Input;
  }): Promise<{ count: number }> {
    const res = await this.call<WireNewCountReply>(RpcPattern.GetNewCount, {
      appId: int64Out(r.appId),
      uid: int64Out(r.uid),
      deviceId: int64Out(r.deviceId),
      lastMsgId: int64Out(r.lastMsgId),
    });
    return { count: res.count };
  }

  async getLatestMessage(r: {
    appId: Int64Input;
    uid: Int64Input;
    limit: number;
  }): Promise<{ messages: HistoryMessage[] }> {
    const res = await this.call<WireLatestReply>(RpcPattern.GetLatestMessage, {
      appId: int64Out(r.appId),
      uid: int64Out(r.uid),
      limit: r.limit,
    });
    return { messages: res.messages.map(historyIn) };
  }

  async ping(): Promise<{ pong: true }> {
    const res = await this.call<WirePingReply>(RpcPattern.Ping, {});
    return { pong: res.pong };
  }
}
