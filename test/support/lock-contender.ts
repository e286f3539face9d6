/**
 * A process that contends for a data folder's lock through the real DataDirLock, driven by lines on stdin
 * so that a test can start the race in two processes at the same instant (both wait in a read):
 *   lock DIR    take the lock; answers {"got":true,...} or {"got":false,"holderPid":...,"message":...}
 *   release     release it; answers {"released":true}
 *   probe DIR   call lockHolder(DIR) in a loop until the next line; answers {"probes":N,"held":M}
 *   stop        end a probe loop (any other line does too)
 *   churn DIR N take (retrying) and release the lock N times; answers {"got","refused","violations"}
 * Answers are JSON lines on stdout; the first is {"ready":true,"pid":...}. The lock is held until
 * `release`, stdin's end (exit) or a kill.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { DataDirLock, DataDirLockedError, lockHolder } from '../../src/storage/data-dir-lock.js';

const now = (): number => performance.timeOrigin + performance.now();
const say = (o: object): void => void process.stdout.write(JSON.stringify(o) + '\n');

let lock: DataDirLock | null = null;
let probing: { stop: boolean; done: Promise<void> } | null = null;

function probeLoop(dir: string): { stop: boolean; done: Promise<void> } {
  const state = { stop: false, done: Promise.resolve() };
  let probes = 0;
  let held = 0;
  state.done = (async () => {
    while (!state.stop) {
      for (let i = 0; i < 20; i++) {
        probes++;
        if (lockHolder(dir)) held++;
      }
      await new Promise((r) => setImmediate(r)); // let the next stdin line in
    }
    say({ probes, held });
  })();
  return state;
}

const pause = new Int32Array(new SharedArrayBuffer(4));

/**
 * Takes the lock `times` times (trying again at once when refused) and releases it each time. While
 * holding it, owns a marker file (created exclusively, checked before removal): a marker that exists
 * already or changed hands means two processes held the lock at once.
 */
function churn(dir: string, times: number): { got: number; refused: number; violations: string[] } {
  const marker = path.join(dir, 'holder');
  let got = 0;
  let refused = 0;
  const violations: string[] = [];
  for (let i = 0; got < times; i++) {
    const mine = new DataDirLock(dir);
    try {
      mine.acquire();
    } catch (err) {
      if (!(err instanceof DataDirLockedError)) throw err;
      refused++;
      continue;
    }
    got++;
    try {
      fs.writeFileSync(marker, String(process.pid), { flag: 'wx' });
      // Hold it a while, so that the other contender is trying to take it when we let go.
      for (const until = performance.now() + 0.5; performance.now() < until;);
      const owner = fs.readFileSync(marker, 'utf8');
      if (owner === String(process.pid)) fs.rmSync(marker);
      else violations.push(`iteration ${i}: marker taken by pid ${owner}`);
    } catch (err) {
      violations.push(`iteration ${i}: ${(err as Error).message}`);
    }
    mine.release();
    // Let the other contender in, so that the lock changes hands often.
    Atomics.wait(pause, 0, 0, 1);
  }
  return { got, refused, violations };
}

async function handle(line: string): Promise<void> {
  const space = line.indexOf(' ');
  const cmd = space < 0 ? line : line.slice(0, space);
  const arg = space < 0 ? '' : line.slice(space + 1);
  if (probing) {
    probing.stop = true;
    await probing.done;
    probing = null;
  }
  if (cmd === 'release') {
    lock?.release();
    lock = null;
    say({ released: true });
  } else if (cmd === 'lock') {
    const t0 = now();
    const mine = new DataDirLock(arg);
    try {
      const note = mine.acquire();
      lock = mine;
      say({ got: true, pid: process.pid, note, t0, t1: now() });
    } catch (err) {
      if (!(err instanceof DataDirLockedError)) throw err;
      say({ got: false, holderPid: err.holderPid, message: err.message, t0, t1: now() });
    }
  } else if (cmd === 'churn') {
    const [dir, times] = arg.split(' ');
    say(churn(dir, Number(times)));
  } else if (cmd === 'probe') {
    probing = probeLoop(arg);
  } else if (cmd !== 'stop') {
    throw new Error(`lock-contender: unknown command ${JSON.stringify(line)}`);
  }
}

let queue = Promise.resolve();
createInterface({ input: process.stdin }).on('line', (line) => {
  queue = queue.then(() => handle(line));
  queue.catch((err: Error) => {
    process.stderr.write(`${err.stack ?? err.message}\n`);
    process.exit(2);
  });
});
process.stdin.on('end', () => void queue.then(() => process.exit(0)));
say({ ready: true, pid: process.pid });
