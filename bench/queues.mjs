/**
 * v4 queues at size: one user's queue grown to each size in turn (10 k, 100 k, 1 M entries in the full
 * run), and at each size GetNewCount and one SyncMessage page from a recent sync key (100 entries back)
 * timed. Batch marks and the counted sequence make both independent of the queue's length; the report
 * gives the ratio of the largest size to the smallest.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { APP_ID, CMD_IM, distUrl, imBody, round } from './lib.mjs';

const { MessageStore } = await import(distUrl('src/storage/message-store.js'));

/** Mean µs per call of `fn` over about `durationMs` (after a short warm-up). */
function timePerCall(fn, durationMs) {
  for (let i = 0; i < 200; i++) fn();
  let calls = 0;
  const start = performance.now();
  let now = start;
  while (now - start < durationMs) {
    for (let i = 0; i < 100; i++) fn();
    calls += 100;
    now = performance.now();
  }
  return ((now - start) * 1000) / calls;
}

export async function queueBench({ work, sizes, durationMs, log }) {
  const root = path.join(work, 'queues-v4');
  const store = MessageStore.open({ root, queueFormat: 'v4' });
  const uid = 424242n;
  const body = imBody(1001, 424242, 'a message in a long queue');
  const msgIds = [];
  const rows = [];
  try {
    for (const size of sizes) {
      while (msgIds.length < size) {
        msgIds.push(store.savePeerMessage(APP_ID, uid, 1n, CMD_IM, body).msgId);
        if (msgIds.length % 50_000 === 0) await store.flush();
      }
      await store.flush();
      log(`v4 queue of ${size} entries: GetNewCount and a SyncMessage page from a recent key`);
      const key = msgIds[msgIds.length - 101];
      const count = store.getNewCount(APP_ID, uid, key);
      const page = store.syncMessage(APP_ID, uid, key);
      if (count !== 100 || page.messages.length !== 100 || page.hasMore) {
        throw new Error(
          `queue of ${size}: count ${count}, page ${page.messages.length} (hasMore ${page.hasMore})`,
        );
      }
      rows.push({
        entries: size,
        newCountUs: round(
          timePerCall(() => store.getNewCount(APP_ID, uid, key), durationMs),
          2,
        ),
        syncPageUs: round(
          timePerCall(() => store.syncMessage(APP_ID, uid, key), durationMs),
          1,
        ),
        fullCountUs: round(
          timePerCall(() => store.getNewCount(APP_ID, uid, 0), durationMs / 4),
          3,
        ),
      });
    }
  } finally {
    await store.close({ saveIndex: false });
    fs.rmSync(root, { recursive: true, force: true });
  }
  const first = rows[0];
  const last = rows[rows.length - 1];
  return {
    rows,
    largestOverSmallest: {
      newCount: round(last.newCountUs / first.newCountUs, 3),
      syncPage: round(last.syncPageUs / first.syncPageUs, 3),
    },
  };
}
