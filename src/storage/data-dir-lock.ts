/**
 * One process owns a data folder. The owner holds an exclusive kernel lock on `ims.lock` for its whole
 * life: an open-file-description lock (fcntl F_OFD_SETLK on Linux, flock(2) on macOS) through
 * fs-native-extensions. Taking it is atomic, and the kernel drops it when the process dies, even on
 * SIGKILL, so there is no stale lock to judge. The file's content (pid, host, /proc start time, role) only
 * tells a refused process and operators who holds it; a lock file whose lock is free is simply taken over.
 *
 * The owner removes the file on release, while still holding the lock. A process that locked the file
 * just before it was removed holds a lock on an orphan, so every acquirer checks, once it holds the lock,
 * that the path still names the file it locked, and starts again if not.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fsx from 'fs-native-extensions';

export const LOCK_FILE = 'ims.lock';

/** How long a refused process waits for the holder to write its name into the file. */
const HOLDER_WAIT_MS = 2000;
const POLL_MS = 5;

export interface LockOwner {
  pid: number;
  host: string;
  /** Field 22 of /proc/PID/stat (clock ticks after boot), or null where /proc is absent. */
  procStart: string | null;
  since: string;
  role: string;
}

/** "ims pid 123 on host since …", or a phrase for a holder that has not written its name. */
export function describeOwner(owner: LockOwner | null): string {
  return owner
    ? `${owner.role} pid ${owner.pid} on ${owner.host} since ${owner.since}`
    : 'a process that has not written its pid into the lock file';
}

export class DataDirLockedError extends Error {
  readonly holderPid: number | null;

  constructor(
    readonly dir: string,
    readonly holder: LockOwner | null,
  ) {
    super(
      `data folder ${dir} is in use by ${describeOwner(holder)} ` +
        `(lock file ${path.join(dir, LOCK_FILE)}); stop that process first`,
    );
    this.name = 'DataDirLockedError';
    this.holderPid = holder?.pid ?? null;
  }
}

function procStartTime(pid: number): string | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces; fields after it follow the last ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return rest[19] ?? null;
  } catch {
    return null;
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Whether the content can be the current holder's. A refused process reads the file the moment the
 * holder got the lock, before the holder replaced the previous (dead) owner's content with its own.
 */
function namesLiveProcess(owner: LockOwner): boolean {
  if (owner.host !== os.hostname()) return true; // cannot check another host's processes
  if (!processAlive(owner.pid)) return false;
  const start = procStartTime(owner.pid);
  return !owner.procStart || !start || owner.procStart === start; // a different start: pid reused
}

/** The owner named in the open lock file, or null when it is empty, torn or not ours. */
function readOwner(fd: number): { owner: LockOwner | null; bytes: number } {
  const size = fs.fstatSync(fd).size;
  if (size === 0) return { owner: null, bytes: 0 };
  const buf = Buffer.alloc(Math.min(size, 64 * 1024));
  const n = fs.readSync(fd, buf, 0, buf.length, 0);
  try {
    const owner = JSON.parse(buf.subarray(0, n).toString('utf8')) as LockOwner;
    return { owner: typeof owner?.pid === 'number' ? owner : null, bytes: n };
  } catch {
    return { owner: null, bytes: n };
  }
}

/** Whether `file` still names the file open as `fd` (the holder removes it on release). */
function isCurrentFile(fd: number, file: string): boolean {
  try {
    const a = fs.fstatSync(fd);
    const b = fs.statSync(file);
    return a.ino === b.ino && a.dev === b.dev;
  } catch {
    return false;
  }
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));
function sleepSync(ms: number): void {
  Atomics.wait(sleeper, 0, 0, ms);
}

function lockError(file: string, err: unknown): Error {
  return new Error(
    `cannot lock ${file}: ${(err as Error).message} (the file system must support fcntl locks)`,
  );
}

/**
 * Who holds the lock of `dir`: null when nobody does; `{ owner: null }` when a process holds it but its
 * name cannot be read. Probes with a shared lock that is dropped at once; an acquirer that meets the
 * probe retries (see DataDirLock.acquire), so probing never makes a server's start fail.
 */
export function lockHolder(dir: string): { owner: LockOwner | null } | null {
  const file = path.join(dir, LOCK_FILE);
  const deadline = Date.now() + HOLDER_WAIT_MS;
  for (;;) {
    let fd: number;
    try {
      fd = fs.openSync(file, 'r'); // read-only: verify must not create files
    } catch {
      return null; // no lock file: nobody holds the folder
    }
    try {
      let free: boolean;
      try {
        free = fsx.tryLock(fd, { shared: true });
      } catch (err) {
        throw lockError(file, err);
      }
      if (free) {
        fsx.unlock(fd);
        return null;
      }
      const { owner } = readOwner(fd);
      if ((owner && namesLiveProcess(owner)) || Date.now() >= deadline) return { owner };
    } finally {
      fs.closeSync(fd);
    }
    sleepSync(POLL_MS);
  }
}

export class DataDirLock {
  private fd: number | null = null;
  private readonly file: string;

  constructor(
    readonly dir: string,
    private readonly role = 'ims',
  ) {
    this.file = path.join(dir, LOCK_FILE);
  }

  /**
   * Takes the lock and keeps it until release() or the process's end. Returns a note when a lock file left
   * by an earlier holder was found. Throws DataDirLockedError naming the holder.
   */
  acquire(): string | null {
    if (this.fd !== null) throw new Error(`${this.file} is already held by this DataDirLock`);
    const deadline = Date.now() + HOLDER_WAIT_MS;
    for (;;) {
      // Never truncate before holding the lock: the content names the holder to everyone refused.
      const fd = fs.openSync(this.file, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644);
      let kept = false;
      try {
        let got: boolean;
        try {
          got = fsx.tryLock(fd);
        } catch (err) {
          throw lockError(this.file, err);
        }
        if (got && isCurrentFile(fd, this.file)) {
          const note = this.takeOver(fd);
          this.fd = fd;
          kept = true;
          return note;
        }
        if (!got) {
          const { owner } = readOwner(fd);
          // A stale name (or none yet) means the holder is between taking the lock and writing its
          // name, or is a probe (lockHolder) that lets go at once: look again shortly.
          if ((owner && namesLiveProcess(owner)) || Date.now() >= deadline) {
            throw new DataDirLockedError(this.dir, owner);
          }
        }
        // else: we locked a file its holder removed while releasing it; open the path again.
      } finally {
        if (!kept) fs.closeSync(fd); // closing drops a lock taken on a removed file
      }
      if (Date.now() >= deadline)
        throw new Error(`cannot take the lock ${this.file}: it keeps being replaced`);
      sleepSync(POLL_MS);
    }
  }

  /** With the lock held: notes a previous holder's content, then writes ours (durably). */
  private takeOver(fd: number): string | null {
    const previous = readOwner(fd);
    const me: LockOwner = {
      pid: process.pid,
      host: os.hostname(),
      procStart: procStartTime(process.pid),
      since: new Date().toISOString(),
      role: this.role,
    };
    fs.ftruncateSync(fd, 0);
    fs.writeSync(fd, JSON.stringify(me) + '\n', 0);
    fs.fsyncSync(fd);
    if (previous.owner) {
      return (
        `took over the stale lock file ${this.file} of ${describeOwner(previous.owner)}: ` +
        `that process no longer holds the lock (it ended without releasing it)`
      );
    }
    if (previous.bytes > 0) return `took over a torn lock file ${this.file} (unreadable content)`;
    return null;
  }

  /** Removes the lock file (while still holding the lock), then lets go. */
  release(): void {
    const fd = this.fd;
    if (fd === null) return;
    this.fd = null;
    try {
      // Only our own file: if someone deleted it by hand, the path may now be another holder's.
      if (isCurrentFile(fd, this.file)) fs.rmSync(this.file, { force: true });
    } finally {
      try {
        fsx.unlock(fd);
      } finally {
        fs.closeSync(fd);
      }
    }
  }
}
