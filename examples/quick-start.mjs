// Quick start: what an IM server does with ims. Run a server (`npm start`), then:
//   node examples/quick-start.mjs            # ims at 127.0.0.1:13333 (config/ims.cfg)
//   node node_modules/ims/examples/quick-start.mjs   # the same, from a project that installed ims
//   IMS_RPC=10.0.0.5:13333 node examples/quick-start.mjs
// test/examples/quick-start.test.ts runs this file against a real server, so it stays correct.
import { ImsClient, MessageCmd, decodeBody, encodeBody } from 'ims';

const [host, port] = (process.env.IMS_RPC ?? '127.0.0.1:13333').split(':');
const ims = new ImsClient({ host, port: Number(port), timeoutMs: 5000 });

const appId = 7;
const alice = 10001n;
const bob = 10002n;
const groupId = 3001n;
const deviceId = 1;
const now = Math.floor(Date.now() / 1000);

// int64 fields come back as bigint, which JSON.stringify refuses; print them as decimal strings.
const json = (value) => JSON.stringify(value, (_key, v) => (typeof v === 'bigint' ? v.toString() : v));

function show(messages) {
  for (const m of messages) {
    const body = decodeBody(m.cmd, m.raw);
    console.log(`  msgId=${m.msgId} cmd=${m.cmd} deviceId=${String(m.deviceId)} ${json(body)}`);
  }
}

try {
  await ims.connect();

  // Two messages from alice to bob, stored in bob's queue (an IM server also saves a copy for the sender).
  for (const [msgid, content] of [
    [1, 'hello bob'],
    [2, 'lunch at noon?'],
  ]) {
    const raw = encodeBody(MessageCmd.IM, { sender: alice, receiver: bob, timestamp: now, msgid, content });
    const saved = await ims.savePeerMessage({ appId, uid: bob, deviceId, cmd: MessageCmd.IM, raw });
    console.log(`saved peer message: msgId=${saved.msgId} prevMsgId=${saved.prevMsgId}`);
  }

  // A super-group message: stored once, in the group's queue.
  const groupRaw = encodeBody(MessageCmd.GROUP_IM, {
    sender: alice,
    receiver: groupId,
    timestamp: now,
    msgid: 3,
    content: 'hi group 3001',
  });
  const group = await ims.saveGroupMessage({
    appId,
    groupId,
    deviceId,
    cmd: MessageCmd.GROUP_IM,
    raw: groupRaw,
  });
  console.log(`saved group message: msgId=${group.msgId} prevMsgId=${group.prevMsgId}`);

  // Bob's phone connects with sync point 0: everything in his queue, newest first.
  const sync = await ims.syncMessage({ appId, uid: bob, deviceId: 2, lastMsgId: 0 });
  console.log(
    `SyncMessage bob: ${sync.messages.length} messages, lastMsgId=${sync.lastMsgId} hasMore=${sync.hasMore}`,
  );
  show(sync.messages);
  const newest = decodeBody(MessageCmd.IM, sync.messages[0].raw);
  console.log(`newest from ${String(newest.sender)} to ${String(newest.receiver)}: ${newest.content}`);

  const unread = await ims.getNewCount({ appId, uid: bob, deviceId: 2, lastMsgId: 0 });
  console.log(`GetNewCount bob since 0: ${unread.count}`);
  const synced = await ims.getNewCount({ appId, uid: bob, deviceId: 2, lastMsgId: sync.lastMsgId });
  console.log(`GetNewCount bob since ${sync.lastMsgId}: ${synced.count}`);

  const latest = await ims.getLatestMessage({ appId, uid: bob, limit: 1 });
  console.log(`GetLatestMessage bob limit 1: ${latest.messages.length} message`);
  show(latest.messages);

  // Group messages since bob joined (timestamp: his join time; 0 = all).
  const groupSync = await ims.syncGroupMessage({
    appId,
    uid: bob,
    deviceId: 2,
    groupId,
    lastMsgId: 0,
    timestamp: 0,
  });
  console.log(
    `SyncGroupMessage group ${groupId}: ${groupSync.messages.length} message, lastMsgId=${groupSync.lastMsgId}`,
  );
  show(groupSync.messages);
} finally {
  await ims.close();
}
