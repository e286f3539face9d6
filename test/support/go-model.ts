/**
 * An independent model of the right answers for queries the Go server answered wrongly, computed from
 * the manifest's saves alone (no engine code): GetNewCount per the spec.
 */
import type { Manifest } from './fixtures.js';

const SYNC_CMDS = new Set([4, 7, 8, 21, 24, 25]);

function isSender(appid: bigint, uid: bigint, cmd: number, raw: Buffer, kefuAppid: bigint): boolean {
  if ((cmd === 4 || cmd === 8) && raw.length >= 24) return raw.readBigInt64BE(0) === uid;
  if (cmd === 24 && raw.length >= 36) return raw.readBigInt64BE(0) === appid && raw.readBigInt64BE(8) === uid;
  if (cmd === 25 && raw.length >= 36) return kefuAppid === appid && raw.readBigInt64BE(24) === uid;
  return false;
}

export function expectedNewCount(
  m: Manifest,
  appid: number,
  uid: number,
  lastMsgId: number,
  kefuAppid = 0n,
): number {
  const saves = m.saves.filter(
    (s) => s.method === 'SavePeerMessage' && s.req.AppID === appid && s.req.Uid === uid,
  );
  for (let i = saves.length - 1; i >= 0; i--) {
    const s = saves[i];
    if (s.resp <= lastMsgId) return 0;
    const raw = Buffer.from(s.req.Raw, 'base64');
    if (SYNC_CMDS.has(s.req.Cmd) && !isSender(BigInt(appid), BigInt(uid), s.req.Cmd, raw, kefuAppid))
      return 1;
  }
  return 0;
}
