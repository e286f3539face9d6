/** Payloads of the RPC patterns (SPEC "RPC over the Nest TCP transport"), validated before any handler runs. */
import { ArrayMaxSize, ArrayNotEmpty, IsArray, IsIn, IsInt, Max, Min } from 'class-validator';
import { Cmd } from '../format/constants.js';
import { IsInt64List, IsNonNegativeInt64, IsStorableBody } from './int64-validators.js';

/** Message kinds an IM server saves into user queues. */
export const PEER_SAVE_CMDS: readonly number[] = [
  Cmd.IM,
  Cmd.GROUP_NOTIFICATION,
  Cmd.GROUP_IM,
  Cmd.SYSTEM,
  Cmd.CUSTOMER,
  Cmd.CUSTOMER_SUPPORT,
  Cmd.NOTIFICATION,
  // v4 folders (the newest GoBelieve): CustomerMessageV2. The engine refuses kinds its folder's format lacks.
  Cmd.CUSTOMER_V2,
];
/** Message kinds saved into a super group's queue. */
export const GROUP_SAVE_CMDS: readonly number[] = [Cmd.GROUP_NOTIFICATION, Cmd.GROUP_IM];
/** Most payloads one SavePeerMessages request may carry. */
export const MAX_BATCH = 1000;
/** Most members one SavePeerGroupMessage may fan out to. */
export const MAX_MEMBERS = 10000;

const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;

type WireId = number | string;

const cmdMessage = (allowed: readonly number[]) => ({
  message: `cmd must be one of ${allowed.join(', ')}`,
});

export class SavePeerMessageRequest {
  @IsNonNegativeInt64() appId: WireId;
  @IsNonNegativeInt64() uid: WireId;
  @IsNonNegativeInt64() deviceId: WireId;
  @IsIn(PEER_SAVE_CMDS, cmdMessage(PEER_SAVE_CMDS)) cmd: number;
  @IsStorableBody('cmd', PEER_SAVE_CMDS) raw: string;
}

/** The items are checked one by one against SavePeerMessageRequest, so one bad item refuses only itself. */
export class SavePeerMessagesRequest {
  @IsArray({ message: 'messages must be an array of SavePeerMessage payloads' })
  @ArrayNotEmpty({ message: 'messages must not be empty' })
  @ArrayMaxSize(MAX_BATCH, { message: `messages has more than ${MAX_BATCH} items` })
  messages: unknown[];
}

export class SaveGroupMessageRequest {
  @IsNonNegativeInt64() appId: WireId;
  @IsNonNegativeInt64() groupId: WireId;
  @IsNonNegativeInt64() deviceId: WireId;
  @IsIn(GROUP_SAVE_CMDS, cmdMessage(GROUP_SAVE_CMDS)) cmd: number;
  @IsStorableBody('cmd', GROUP_SAVE_CMDS) raw: string;
}

export class SavePeerGroupMessageRequest {
  @IsNonNegativeInt64() appId: WireId;
  @IsInt64List(MAX_MEMBERS) members: WireId[];
  @IsNonNegativeInt64() deviceId: WireId;
  @IsIn(PEER_SAVE_CMDS, cmdMessage(PEER_SAVE_CMDS)) cmd: number;
  @IsStorableBody('cmd', PEER_SAVE_CMDS) raw: string;
}

export class SyncMessageRequest {
  @IsNonNegativeInt64() appId: WireId;
  @IsNonNegativeInt64() uid: WireId;
  @IsNonNegativeInt64() deviceId: WireId;
  @IsNonNegativeInt64() lastMsgId: WireId;
}

export class SyncGroupMessageRequest {
  @IsNonNegativeInt64() appId: WireId;
  @IsNonNegativeInt64() uid: WireId;
  @IsNonNegativeInt64() deviceId: WireId;
  @IsNonNegativeInt64() groupId: WireId;
  @IsNonNegativeInt64() lastMsgId: WireId;
  @IsInt({ message: 'timestamp must be an integer (seconds, int32)' })
  @Min(INT32_MIN, { message: 'timestamp must fit in int32' })
  @Max(INT32_MAX, { message: 'timestamp must fit in int32' })
  timestamp: number;
}

export class GetNewCountRequest {
  @IsNonNegativeInt64() appId: WireId;
  @IsNonNegativeInt64() uid: WireId;
  @IsNonNegativeInt64() deviceId: WireId;
  @IsNonNegativeInt64() lastMsgId: WireId;
}

export class GetLatestMessageRequest {
  @IsNonNegativeInt64() appId: WireId;
  @IsNonNegativeInt64() uid: WireId;
  @IsInt({ message: 'limit must be an integer' })
  @Min(1, { message: 'limit must be at least 1' })
  limit: number;
}
