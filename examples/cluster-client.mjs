// Cluster client: saves and syncs through whichever node etcd names master of each shard, and tells
// the two kinds of failed save apart. With a cluster running (see the README's cluster section):
//   IMS_ETCD=10.0.0.5:2379 IMS_CLUSTER=chat node examples/cluster-client.mjs
// test/examples/cluster-client.test.ts runs this file against etcd and two real nodes.
import { ImsClusterClient, ImsRpcError, ImsTimeoutError, MessageCmd, decodeBody, encodeBody } from 'ims';

const ims = new ImsClusterClient({
  etcd: (process.env.IMS_ETCD ?? '127.0.0.1:2379').split(','),
  cluster: process.env.IMS_CLUSTER ?? 'ims',
  timeoutMs: 5000, // per request
  failoverTimeoutMs: 15000, // how long a call waits for a shard to have a master again
});

const appId = 7;
const alice = 10001n;
const bob = 10002n;

/**
 * One save. ImsClusterClient has already retried every refusal that provably wrote nothing (not the
 * master, not enough in-sync replicas, not joined yet, connection refused), on the same master or the
 * next one. What reaches us is either "may be stored" (written, not acknowledged: it may show up in
 * bob's queue later, or be cut by the failover), or another error (a bad request, no master in time).
 */
async function save(msgid, content) {
  const raw = encodeBody(MessageCmd.IM, {
    sender: alice,
    receiver: bob,
    timestamp: Math.floor(Date.now() / 1000),
    msgid,
    content,
  });
  try {
    return await ims.savePeerMessage({ appId, uid: bob, deviceId: 1, cmd: MessageCmd.IM, raw });
  } catch (err) {
    if ((err instanceof ImsRpcError || err instanceof ImsTimeoutError) && err.mayBeStored) {
      // Do not resend blindly: it could be stored twice. Resend with the same msgid, which bob's
      // devices use to drop duplicates, or sync bob's queue and look for it first.
      console.log(`save ${msgid} may be stored: ${err.message}`);
      return null;
    }
    throw err;
  }
}

try {
  await ims.connect();
  console.log(`connected: ${ims.shardCount} shard(s); bob is on shard ${ims.shardOf(bob)}`);
  for (const [msgid, content] of [
    [1, 'hello bob'],
    [2, 'lunch at noon?'],
  ]) {
    const saved = await save(msgid, content);
    if (saved) console.log(`saved: msgId=${saved.msgId} prevMsgId=${saved.prevMsgId}`);
  }
  const sync = await ims.syncMessage({ appId, uid: bob, deviceId: 1, lastMsgId: 0 });
  for (const m of sync.messages) console.log(`  msgId=${m.msgId} ${decodeBody(m.cmd, m.raw).content}`);
} finally {
  await ims.close();
}
