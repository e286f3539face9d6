/**
 * Child process for the log-truncation crash test: opens a folder and cuts its log back, SIGKILLing
 * itself just before its N-th file-changing system call (open for writing, write, fsync, rename,
 * truncate, unlink) made by the cut, so that every step boundary of truncateLog can be crashed at.
 * argv: root, blockSize, to, killAt (0: never). Prints "done <calls>" when the cut completes.
 */
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { MessageStore } from '../../src/storage/message-store.js';

const [root, blockSizeArg, toArg, killAtArg] = process.argv.slice(2);
const killAt = Number(killAtArg);
let armed = false;
let calls = 0;

function step(): void {
  if (!armed) return;
  calls++;
  if (calls === killAt) process.kill(process.pid, 'SIGKILL');
}

const patch = <
  K extends 'writeSync' | 'fsyncSync' | 'fdatasyncSync' | 'renameSync' | 'ftruncateSync' | 'unlinkSync',
>(
  name: K,
): void => {
  const original = fs[name] as (...args: unknown[]) => unknown;
  (fs as unknown as Record<string, unknown>)[name] = (...args: unknown[]) => {
    step();
    return original(...args);
  };
};
for (const name of [
  'writeSync',
  'fsyncSync',
  'fdatasyncSync',
  'renameSync',
  'ftruncateSync',
  'unlinkSync',
] as const)
  patch(name);
const openSync = fs.openSync;
fs.openSync = ((file: fs.PathLike, flags?: fs.OpenMode, mode?: fs.Mode) => {
  if (flags !== undefined && flags !== 'r') step();
  return openSync(file, flags ?? 'r', mode);
}) as typeof fs.openSync;
syncBuiltinESMExports();

const store = MessageStore.open({ root, blockSize: Number(blockSizeArg) });
armed = true;
store.truncateLog(Number(toArg));
armed = false;
console.log(`done ${calls}`);
await store.close({ saveIndex: false });
