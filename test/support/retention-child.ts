/**
 * Child process for the retention crash test: opens a folder and runs one retention pass by size,
 * SIGKILLing itself just before its N-th file-changing call (write, fsync, rm, rename, truncate) made by
 * the pass. argv: root, blockSize, maxBytes, killAt (0: never). Prints "done <calls>" when it completes.
 */
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { MessageStore } from '../../src/storage/message-store.js';

const [root, blockSizeArg, maxBytesArg, killAtArg] = process.argv.slice(2);
const killAt = Number(killAtArg);
let armed = false;
let calls = 0;

for (const name of [
  'writeSync',
  'fsyncSync',
  'fdatasyncSync',
  'renameSync',
  'ftruncateSync',
  'unlinkSync',
  'rmSync',
] as const) {
  const original = fs[name] as (...args: unknown[]) => unknown;
  (fs as unknown as Record<string, unknown>)[name] = (...args: unknown[]) => {
    if (armed && ++calls === killAt) process.kill(process.pid, 'SIGKILL');
    return original(...args);
  };
}
syncBuiltinESMExports();

const store = MessageStore.open({ root, blockSize: Number(blockSizeArg) });
armed = true;
store.applyRetention({ maxAgeMs: 0, maxBytes: Number(maxBytesArg) });
armed = false;
console.log(`done ${calls}`);
await store.close();
