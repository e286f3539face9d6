import { Controller, Injectable, UseFilters, UseGuards, UsePipes, type CanActivate } from '@nestjs/common';
import { MessagePattern, Payload, RpcException } from '@nestjs/microservices';
import {
  RpcPattern,
  type WireHistoryMessage,
  type WireLatestReply,
  type WireNewCountReply,
  type WirePingReply,
  type WireSaveReply,
  type WireSaveOutcome,
  type WireSavePeerGroupReply,
  type WireSavePeerMessagesReply,
  type WireSyncReply,
} from '../client/wire.js';
import { ReplicationService } from '../replication/replication.service.js';
import { ClusterRefusal, NotWrittenError } from '../replication/ack-errors.js';
import { int64ToJson } from '../format/int64.js';
import type { HistoryMessage, SyncResult } from '../storage/message-store.js';
import { StorageService, type PeerSave } from '../storage/storage.service.js';
import { decodeBase64, parseWireInt64 } from './int64-validators.js';
import { RpcCountersService } from './rpc-counters.service.js';
import { RpcErrorFilter, refusalLog, rpcErrorMessage } from './rpc-error.filter.js';
import { RpcValidationPipe } from './rpc-validation.pipe.js';
import {
  GetLatestMessageRequest,
  GetNewCountRequest,
  SaveGroupMessageRequest,
  SavePeerGroupMessageRequest,
  SavePeerMessageRequest,
  SavePeerMessagesRequest,
  SyncGroupMessageRequest,
  SyncMessageRequest,
} from './rpc.dto.js';

/**
 * Counts every request that reaches a handler, before validation, as Go counts every call. A guard
 * rather than an interceptor: any interceptor makes Nest wrap every call in extra observables.
 */
@Injectable()
export class RequestCountGuard implements CanActivate {
  constructor(private readonly counters: RpcCountersService) {}

  canActivate(): boolean {
    this.counters.requestCount++;
    return true;
  }
}

/** A slave's files must stay byte-identical to its master's, so it takes no writes of its own. */
@Injectable()
export class WritableGuard implements CanActivate {
  constructor(private readonly replication: ReplicationService) {}

  canActivate(): boolean {
    const refusal = this.replication.writeRefusal();
    // Refused before any write: the not-written kind, which a client may send again elsewhere.
    if (refusal) throw new NotWrittenError(refusal);
    return true;
  }
}

/** Values the DTO rules have already checked. */
const id = (value: number | string): bigint => parseWireInt64(value)!;
/** Message ids are byte offsets (below 2^53); a larger lastMsgId simply means "newer than everything". */
const msgId = (value: number | string): number => Number(parseWireInt64(value)!);
const body = (raw: string): Buffer => decodeBase64(raw)!;

function toWire(m: HistoryMessage): WireHistoryMessage {
  return { msgId: m.msgId, deviceId: int64ToJson(m.deviceId), cmd: m.cmd, raw: m.raw.toString('base64') };
}

function syncReply(r: SyncResult): WireSyncReply {
  return { messages: r.messages.map(toWire), lastMsgId: r.lastMsgId, hasMore: r.hasMore };
}

/** The ims RPC methods over the Nest TCP transport: payloads validated, answers from the storage engine. */
@Controller()
@UseFilters(RpcErrorFilter)
@UseGuards(RequestCountGuard)
@UsePipes(RpcValidationPipe)
export class RpcController {
  constructor(
    private readonly storage: StorageService,
    private readonly counters: RpcCountersService,
    private readonly validation: RpcValidationPipe,
  ) {}

  @MessagePattern(RpcPattern.SavePeerMessage)
  @UseGuards(WritableGuard)
  async savePeerMessage(@Payload() r: SavePeerMessageRequest): Promise<WireSaveReply> {
    const res = await this.storage.savePeerMessage(
      id(r.appId),
      id(r.uid),
      id(r.deviceId),
      r.cmd,
      body(r.raw),
    );
    this.counters.peerMessageCount++;
    return { msgId: res.msgId, prevMsgId: res.prevMsgId };
  }

  /**
   * Several SavePeerMessage payloads in one packet. Each item is checked and saved on its own, so a bad
   * item refuses only itself, with the error a single SavePeerMessage would have had; the reply goes out
   * once every saved item is durable.
   */
  @MessagePattern(RpcPattern.SavePeerMessages)
  @UseGuards(WritableGuard)
  async savePeerMessages(@Payload() r: SavePeerMessagesRequest): Promise<WireSavePeerMessagesReply> {
    // Counted per message, as if each had come alone (the guard counted the packet once).
    this.counters.requestCount += r.messages.length - 1;
    const results: (WireSaveOutcome | null)[] = [];
    const saves: PeerSave[] = [];
    const slots: number[] = [];
    for (const item of r.messages) {
      const checked =
        this.validation.acceptFast(SavePeerMessageRequest, item) ??
        (await this.validation.checkSlowly(SavePeerMessageRequest, item));
      if (checked instanceof RpcException) {
        results.push({ error: `${RpcPattern.SavePeerMessage}: ${rpcErrorMessage(checked)}` });
        continue;
      }
      const m = checked as unknown as SavePeerMessageRequest;
      slots.push(results.length);
      results.push(null);
      saves.push({
        appid: id(m.appId),
        uid: id(m.uid),
        deviceId: id(m.deviceId),
        cmd: m.cmd,
        raw: body(m.raw),
      });
    }
    const saved = saves.length > 0 ? await this.storage.savePeerMessages(saves) : [];
    saved.forEach((res, i) => {
      if (res instanceof Error) {
        if (res instanceof ClusterRefusal) refusalLog.note(res);
        results[slots[i]] = { error: `${RpcPattern.SavePeerMessage}: ${rpcErrorMessage(res)}` };
      } else {
        this.counters.peerMessageCount++;
        results[slots[i]] = { msgId: res.msgId, prevMsgId: res.prevMsgId };
      }
    });
    return { results: results as WireSaveOutcome[] };
  }

  @MessagePattern(RpcPattern.SaveGroupMessage)
  @UseGuards(WritableGuard)
  async saveGroupMessage(@Payload() r: SaveGroupMessageRequest): Promise<WireSaveReply> {
    const res = await this.storage.saveGroupMessage(
      id(r.appId),
      id(r.groupId),
      id(r.deviceId),
      r.cmd,
      body(r.raw),
    );
    this.counters.groupMessageCount++;
    return { msgId: res.msgId, prevMsgId: res.prevMsgId };
  }

  @MessagePattern(RpcPattern.SavePeerGroupMessage)
  @UseGuards(WritableGuard)
  async savePeerGroupMessage(@Payload() r: SavePeerGroupMessageRequest): Promise<WireSavePeerGroupReply> {
    const res = await this.storage.savePeerGroupMessage(
      id(r.appId),
      r.members.map(id),
      id(r.deviceId),
      r.cmd,
      body(r.raw),
    );
    this.counters.peerMessageCount += res.length;
    return { messageIds: res.map((s) => ({ msgId: s.msgId, prevMsgId: s.prevMsgId })) };
  }

  @MessagePattern(RpcPattern.SyncMessage)
  syncMessage(@Payload() r: SyncMessageRequest): WireSyncReply {
    return syncReply(this.storage.syncMessage(id(r.appId), id(r.uid), msgId(r.lastMsgId)));
  }

  @MessagePattern(RpcPattern.SyncGroupMessage)
  syncGroupMessage(@Payload() r: SyncGroupMessageRequest): WireSyncReply {
    return syncReply(
      this.storage.syncGroupMessage(id(r.appId), id(r.groupId), msgId(r.lastMsgId), r.timestamp),
    );
  }

  @MessagePattern(RpcPattern.GetNewCount)
  getNewCount(@Payload() r: GetNewCountRequest): WireNewCountReply {
    return { count: this.storage.getNewCount(id(r.appId), id(r.uid), msgId(r.lastMsgId)) };
  }

  @MessagePattern(RpcPattern.GetLatestMessage)
  getLatestMessage(@Payload() r: GetLatestMessageRequest): WireLatestReply {
    return { messages: this.storage.getLatestMessages(id(r.appId), id(r.uid), r.limit).map(toWire) };
  }

  @MessagePattern(RpcPattern.Ping)
  ping(): WirePingReply {
    return { pong: true };
  }
}
