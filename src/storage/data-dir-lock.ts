/**
 * One process owns a data folder. The owner holds `ims.lock` (created with O_EXCL) naming its pid,
 * host and the kernel's start time of that pid; a lock whose process is gone, or whose pid now belongs
 * to another process (pid reuse, e.g. pid 1 in a restarted container), is stale and taken over.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export const LOCK_FILE = 'ims.lock';

interface LockOwner {
  pid: number;
  host: string;
  /** Field 22 of /proc/PID/stat (clock ticks after boot), or null where /proc is absent. */
  procStart: string | null;
  since: string;
  role: string;
}

export class DataDirLockedError extends Error {
  constructor(
    readonly dir: string,
    readonly holderPid: number,
    holder: LockOwner,
  ) {
    super(
      `data folder ${dir} is in use by ${holder.role} pid ${holderPid} on ${holder.host} since ${holder.since} ` +
        `(lock file ${path.join(dir, LOCK_FILE)}); stop that process first`,
    );
    this.name = 'DataDirLockedError';
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

/** Reads who holds the lock of `dir`, or null when nobody (no lock file, or a stale one). */
export function lockHolder(dir: string): LockOwner | null {
  let owner: LockOwner;
  try {
    owner = JSON.parse(fs.readFileSync(path.join(dir, LOCK_FILE), 'utf8')) as LockOwner;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    // An unreadable lock file was torn by a crash while being written: nobody holds it.
    return null;
  }
  if (typeof owner?.pid !== 'number') return null;
  if (owner.host !== os.hostname()) return owner; // cannot check another host's processes: respect it
  if (owner.pid === process.pid && owner.procStart === procStartTime(process.pid)) return owner;
  if (owner.pid === process.pid) return null; // our pid, an earlier incarnation (container restart)
  if (!processAlive(owner.pid)) return null;
  const start = procStartTime(owner.pid);
  if (owner.procStart && start && owner.procStart !== start) return null; // pid reused
  return owner;
}

export class DataDirLock {
  private held = false;
  private readonly file: string;

  constructor(
    readonly dir: string,
    private readonly role = 'ims',
  ) {
    this.file = path.join(dir, LOCK_FILE);
  }

  /** Takes the lock; returns a note when a stale lock was taken over. Throws DataDirLockedError. */
  acquire(): string | null {
    const me: LockOwner = {
      pid: process.pid,
      host: os.hostname(),
      procStart: procStartTime(process.pid),
      since: new Date().toISOString(),
      role: this.role,
    };
    let note: string | null = null;
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        const fd = fs.openSync(this.file, 'wx', 0o644);
        try {
          fs.writeSync(fd, JSON.stringify(me) + '\n');
          fs.fsyncSync(fd);
        } finally {
          fs.closeSync(fd);
        }
        this.held = true;
        return note;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const holder = lockHolder(this.dir);
      if (holder) throw new DataDirLockedError(this.dir, holder.pid, holder);
      note = `took over a stale lock ${this.file} (its process is gone)`;
      fs.rmSync(this.file, { force: true });
    }
    throw new Error(`cannot take the lock ${this.file}: it keeps reappearing`);
  }

  release(): void {
    if (!this.held) return;
    this.held = false;
    try {
      const owner = JSON.parse(fs.readFileSync(this.file, 'utf8')) as LockOwner;
      if (owner.pid === process.pid) fs.rmSync(this.file, { force: true });
    } catch {
      // Already gone: nothing to release.
    }
  }
}
