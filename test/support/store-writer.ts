/**
 * Child process for kill -9 tests: opens a MessageStore and saves messages as fast as it can, printing
 * "ack <msgId> <uid>" only after each save is durable (the server's sync durability). The parent kills it.
 * argv: root, seed
 */
import { Cmd } from '../../src/format/constants.js';
import { MessageStore } from '../../src/storage/index.js';
import { APP, imBody, rng } from './workload.js';

const [root, seedArg] = process.argv.slice(2);
const store = MessageStore.open({ root, blockSize: 256 * 1024 });
const r = rng(Number(seedArg));
console.log(`ready ${store.nextId}`);
for (let i = 0; ; i++) {
  const batch: Promise<void>[] = [];
  for (let k = 0; k < 20; k++) {
    const uid = 1n + BigInt(Math.floor(r() * 50));
    const body = imBody(900n, uid, `k${i}-${k} ${'y'.repeat(Math.floor(r() * 300))}`);
    const group = r() < 0.2;
    const res = group
      ? store.saveGroupMessage(APP, uid % 3n, 1n, Cmd.GROUP_IM, body)
      : store.savePeerMessage(APP, uid, 1n, Cmd.IM, body);
    const line = `ack ${res.msgId} ${group ? 'g' : 'u'}${group ? uid % 3n : uid}`;
    batch.push(store.whenDurable().then(() => void process.stdout.write(line + '\n')));
  }
  await Promise.all(batch);
  if (i % 50 === 0) await store.saveIndex();
}
