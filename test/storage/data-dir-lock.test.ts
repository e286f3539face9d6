/**
 * The data folder lock under a race: processes that start together on a folder whose `ims.lock` is stale
 * (its writer was SIGKILLed) must never both take it. IMS_LOCK_RACE_TRIALS=2000 runs a longer soak of
 * the two-process race (default 300).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import { DataDirLock, DataDirLockedError, LOCK_FILE, lockHolder } from '../../src/storage/data-dir-lock.js';
import { MessageStore } from '../../src/storage/index.js';
import { removeDir, tempDir } from '../support/fixtures.js';
import { clientFor, imBody } from '../support/rpc-client.js';
import { MAIN_JS, startServer, type ServerProcess } from '../support/server-process.js';

const CONTENDER = path.join(path.dirname(fileURLToPath(import.meta.url)), '../support/lock-contender.js');
const TRIALS = Number(process.env.IMS_LOCK_RACE_TRIALS ?? 300);

type Answer = Record<string, unknown> & {
  got?: boolean;
  pid?: number;
  holderPid?: number | null;
  message?: string;
  note?: string | null;
  t0?: number;
  t1?: number;
};

const contenders = new Set<ChildProcess>();
// A failed assertion must not leave a contender (and so this test file) running.
after(() => contenders.forEach((p) => p.kill('SIGKILL')));

/** A lock-contender child process, answering one JSON line per command. */
class Contender {
  readonly proc: ChildProcess;
  private readonly answers: Answer[] = [];
  private waiter: (() => void) | null = null;
  private stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private constructor() {
    this.proc = spawn(process.execPath, [CONTENDER], { stdio: ['pipe', 'pipe', 'pipe'] });
    contenders.add(this.proc);
    this.proc.once('exit', () => contenders.delete(this.proc));
    let buf = '';
    this.proc.stdout!.on('data', (chunk: Buffer) => {
      buf += chunk.toString();
      const lines = buf.split('\n');
      buf = lines.pop()!;
      for (const l of lines) this.answers.push(JSON.parse(l) as Answer);
      this.waiter?.();
    });
    this.proc.stderr!.on('data', (c: Buffer) => (this.stderr += c.toString()));
    this.exited = new Promise((resolve) =>
      this.proc.once('exit', (code, signal) => resolve({ code, signal })),
    );
    void this.exited.then(() => this.waiter?.());
  }

  static async start(): Promise<Contender> {
    const c = new Contender();
    const ready = await c.next();
    assert.equal(ready.ready, true, `contender did not start: ${JSON.stringify(ready)}`);
    return c;
  }

  get pid(): number {
    return this.proc.pid!;
  }

  send(line: string): void {
    this.proc.stdin!.write(line + '\n');
  }

  async next(timeoutMs = 10000): Promise<Answer> {
    const deadline = Date.now() + timeoutMs;
    while (this.answers.length === 0) {
      if (this.proc.exitCode !== null || this.proc.signalCode !== null) {
        throw new Error(`contender ${this.proc.pid} exited without answering: ${this.stderr}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`contender ${this.proc.pid} did not answer in ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.waiter = null;
    }
    return this.answers.shift()!;
  }

  async ask(line: string): Promise<Answer> {
    this.send(line);
    return this.next();
  }

  /** Closes stdin: the contender exits, and the kernel drops any lock it holds. */
  async end(): Promise<void> {
    this.proc.stdin!.end();
    await this.exited;
  }

  async kill9(): Promise<void> {
    this.proc.kill('SIGKILL');
    assert.equal((await this.exited).signal, 'SIGKILL');
  }
}

/** Sends `lock DIR` to both at once (both are blocked reading stdin) and checks that exactly one got it. */
async function race(a: Contender, b: Contender, dir: string, label: string) {
  a.send(`lock ${dir}`);
  b.send(`lock ${dir}`);
  const [ra, rb] = await Promise.all([a.next(), b.next()]);
  const got = [ra, rb].filter((r) => r.got);
  assert.equal(got.length, 1, `${label}: ${got.length} processes took the lock: ${JSON.stringify([ra, rb])}`);
  const [winner, loser] = ra.got ? [a, b] : [b, a];
  const [w, l] = ra.got ? [ra, rb] : [rb, ra];
  assert.equal(w.pid, winner.pid);
  assert.equal(l.holderPid, winner.pid, `${label}: the refusal names the wrong holder: ${l.message}`);
  assert.match(l.message!, new RegExp(`is in use by ims pid ${winner.pid} on .*stop that process first`));
  const content = JSON.parse(fs.readFileSync(path.join(dir, LOCK_FILE), 'utf8')) as { pid: number };
  assert.equal(content.pid, winner.pid, `${label}: the lock file names ${content.pid}, not the holder`);
  const overlapped = Math.max(ra.t0!, rb.t0!) < Math.min(ra.t1!, rb.t1!);
  return { winner, loser, w, l, overlapped };
}

/** A pid whose process has exited (as a SIGKILLed server's is). */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', '0']);
  return r.pid!;
}

function writeLockFile(dir: string, content: string): void {
  fs.writeFileSync(path.join(dir, LOCK_FILE), content);
}

function staleContent(pid: number): string {
  // procStart '1' cannot match a process that reuses the pid later.
  return JSON.stringify({ pid, host: os.hostname(), procStart: '1', since: 'then', role: 'ims' }) + '\n';
}

describe('data folder lock: two processes racing for a stale lock', () => {
  const dirs: string[] = [];
  after(() => dirs.forEach(removeDir));

  it(`exactly one of two processes started at the same instant takes the lock (${TRIALS} trials)`, async (t) => {
    const root = tempDir('ims-lock-race-');
    dirs.push(root);
    const dead = deadPid();
    const a = await Contender.start();
    const b = await Contender.start();
    let overlapped = 0;
    const wins = new Map<number, number>([
      [a.pid, 0],
      [b.pid, 0],
    ]);
    try {
      for (let i = 0; i < TRIALS; i++) {
        const dir = path.join(root, `t${i}`);
        fs.mkdirSync(dir);
        // A dead writer's lock file, an empty one (torn while written), or none at all.
        const variant = i % 3;
        if (variant === 0) writeLockFile(dir, staleContent(dead));
        if (variant === 1) writeLockFile(dir, '');
        const [first, second] = i % 2 === 0 ? [a, b] : [b, a];
        const r = await race(first, second, dir, `trial ${i}`);
        if (variant === 0) {
          assert.match(r.w.note ?? '', new RegExp(`took over the stale lock file .* pid ${dead} `));
        } else {
          assert.equal(r.w.note, null);
        }
        if (r.overlapped) overlapped++;
        wins.set(r.winner.pid, wins.get(r.winner.pid)! + 1);
        assert.deepEqual(await r.winner.ask('release'), { released: true });
        assert.equal(fs.existsSync(path.join(dir, LOCK_FILE)), false, 'release removes the lock file');
        fs.rmdirSync(dir);
      }
    } finally {
      await Promise.all([a.end(), b.end()]);
    }
    t.diagnostic(
      `${overlapped}/${TRIALS} trials had both acquire() calls running at once; wins ${[...wins.values()].join('/')}`,
    );
    // Otherwise the trials did not race at all and proved nothing.
    assert.ok(overlapped >= TRIALS / 10, `only ${overlapped} of ${TRIALS} trials raced`);
  });

  it('a SIGKILLed holder drops the lock: fresh processes race on its leftover file (20 rounds)', async () => {
    const dir = tempDir('ims-lock-kill-');
    dirs.push(dir);
    let killed: number | null = null;
    for (let round = 0; round < 20; round++) {
      const [a, b] = await Promise.all([Contender.start(), Contender.start()]);
      const r = await race(a, b, dir, `round ${round}`);
      if (killed !== null) {
        assert.match(r.w.note ?? '', new RegExp(`stale lock file .* pid ${killed} `), `round ${round}`);
      }
      await r.loser.end();
      await r.winner.kill9();
      const left = JSON.parse(fs.readFileSync(path.join(dir, LOCK_FILE), 'utf8')) as { pid: number };
      assert.equal(left.pid, r.winner.pid, 'SIGKILL leaves the lock file naming the killed holder');
      assert.equal(lockHolder(dir), null, 'nobody holds the lock once its holder is killed');
      killed = r.winner.pid;
    }
  });

  it('two processes handing the lock back and forth never hold it at once (250 turns each)', async () => {
    // Each release removes the file while a spinning contender may have it open: without the check that
    // the locked file is still the one at the path, both would hold a lock (one on the removed file).
    const dir = tempDir('ims-lock-churn-');
    dirs.push(dir);
    const [a, b] = await Promise.all([Contender.start(), Contender.start()]);
    try {
      a.send(`churn ${dir} 250`);
      b.send(`churn ${dir} 250`);
      const results = await Promise.all([a.next(60000), b.next(60000)]);
      for (const r of results) {
        assert.deepEqual(r.violations, [], `two holders at once: ${JSON.stringify(results)}`);
        assert.equal(r.got, 250);
        assert.ok(Number(r.refused) > 0, `the contenders never met: ${JSON.stringify(results)}`);
      }
    } finally {
      await Promise.all([a.end(), b.end()]);
    }
  });

  it('probing the holder (verify, repair --dry-run) never makes an acquire fail', async () => {
    const dir = tempDir('ims-lock-probe-');
    dirs.push(dir);
    const prober = await Contender.start();
    try {
      prober.send(`probe ${dir}`);
      for (let i = 0; i < 300; i++) {
        const lock = new DataDirLock(dir);
        lock.acquire();
        lock.release();
        await new Promise((r) => setImmediate(r));
      }
      const counts = await prober.ask('stop');
      assert.ok(Number(counts.probes) > 0 && Number(counts.held) > 0, `probes ${JSON.stringify(counts)}`);
    } finally {
      await prober.end();
    }
  });
});

describe('data folder lock: within one process, leftovers and tools', () => {
  const dirs: string[] = [];
  after(() => dirs.forEach(removeDir));

  it('a second lock in the same process is refused, naming our pid; the kernel lock is what counts', () => {
    const dir = tempDir('ims-lock-same-');
    dirs.push(dir);
    const first = new DataDirLock(dir);
    assert.equal(first.acquire(), null);
    assert.throws(
      () => new DataDirLock(dir, 'ims repair').acquire(),
      (err: Error) =>
        err instanceof DataDirLockedError &&
        err.holderPid === process.pid &&
        err.message.includes(`in use by ims pid ${process.pid} on ${os.hostname()}`),
    );
    assert.equal(lockHolder(dir)?.owner?.pid, process.pid);
    first.release();
    assert.equal(fs.existsSync(path.join(dir, LOCK_FILE)), false);
    assert.equal(lockHolder(dir), null);

    // A leftover file naming a live process (ourselves, with our real start time) does not block:
    // nobody holds its kernel lock.
    const mine = new DataDirLock(dir);
    mine.acquire();
    const content = fs.readFileSync(path.join(dir, LOCK_FILE), 'utf8');
    mine.release();
    writeLockFile(dir, content);
    assert.equal(lockHolder(dir), null, 'a leftover file whose lock is free has no holder');
    const again = new DataDirLock(dir);
    assert.match(again.acquire() ?? '', new RegExp(`took over the stale lock file .* pid ${process.pid} `));
    again.release();
  });

  it('ims repair refuses while another process holds the lock, and runs once that process is SIGKILLed', async () => {
    const dir = tempDir('ims-lock-repair-');
    dirs.push(dir);
    const store = MessageStore.open({ root: dir });
    store.savePeerMessage(7n, 1n, 1n, 4, imBody(2n, 1n, 'one'));
    await store.close();
    const holder = await Contender.start();
    assert.equal((await holder.ask(`lock ${dir}`)).got, true);
    const refused = spawnSync(process.execPath, [MAIN_JS, 'repair', dir], { encoding: 'utf8' });
    assert.equal(refused.status, 1, refused.stdout + refused.stderr);
    assert.match(refused.stdout, new RegExp(`refused: .*pid ${holder.pid}\\b.*stop that process first`));
    await holder.kill9();
    const ran = spawnSync(process.execPath, [MAIN_JS, 'repair', dir], { encoding: 'utf8' });
    assert.equal(ran.status, 0, ran.stdout + ran.stderr);
    assert.doesNotMatch(ran.stdout, /refused/);
    assert.equal(fs.existsSync(path.join(dir, LOCK_FILE)), false, 'repair removes the lock file it took');
  });
});

describe('data folder lock: real servers started together after a SIGKILL', () => {
  const servers: ServerProcess[] = [];
  after(async () => {
    await Promise.all(servers.map((s) => s.kill9()));
    servers.forEach((s) => removeDir(path.dirname(s.configPath))); // holds the first one's data folder too
  });

  /** Resolves 'serving' once the server listens, or 'exited' once it exits, whichever comes first. */
  async function outcome(s: ServerProcess): Promise<'serving' | 'exited'> {
    return Promise.race([
      s.waitForLog(/rpc listening on/, 30000).then(
        () => 'serving' as const,
        () => 'exited' as const,
      ),
      s.waitExit(30000).then(() => 'exited' as const),
    ]);
  }

  it('exactly one of two servers serves, the other exits 1 naming its pid (5 rounds)', async () => {
    const first = await startServer({ http: false });
    servers.push(first);
    const dataDir = first.dataDir;
    let holder = first;
    const saved: number[] = [];
    for (let round = 0; round < 5; round++) {
      const client = clientFor(holder);
      saved.push(
        (
          await client.savePeerMessage({
            appId: 1,
            uid: 9,
            deviceId: 0,
            cmd: 4,
            raw: imBody(1, 9, `r${round}`),
          })
        ).msgId,
      );
      await client.close();
      await holder.kill9();
      const killed = holder.proc.pid!;
      const pair = await Promise.all([
        startServer({ dataDir, http: false, waitReady: false }),
        startServer({ dataDir, http: false, waitReady: false }),
      ]);
      servers.push(...pair);
      const results = await Promise.all(pair.map(outcome));
      const serving = pair.filter((_, i) => results[i] === 'serving');
      assert.equal(
        serving.length,
        1,
        `round ${round}: ${serving.length} servers serve:\n${pair.map((s) => s.logText()).join('\n----\n')}`,
      );
      const winner = serving[0];
      const loser = pair.find((s) => s !== winner)!;
      const exit = await loser.waitExit();
      assert.equal(exit.code, 1, loser.logText());
      assert.match(loser.logText(), new RegExp(`in use by ims pid ${winner.proc.pid} `));
      assert.match(winner.logText(), new RegExp(`took over the stale lock file .* pid ${killed} `));
      holder = winner;
    }
    // The last holder has every message saved by the earlier ones: one writer at a time.
    const client = clientFor(holder);
    const sync = await client.syncMessage({ appId: 1, uid: 9, deviceId: 0, lastMsgId: 0 });
    await client.close();
    assert.deepEqual(
      sync.messages.map((m) => m.msgId).sort((x, y) => x - y),
      saved,
    );
    assert.equal((await holder.stop()).code, 0);
    assert.equal(fs.existsSync(path.join(dataDir, LOCK_FILE)), false, 'a clean stop removes the lock file');
  });
});
