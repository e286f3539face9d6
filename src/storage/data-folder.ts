import * as fs from 'node:fs';
import * as path from 'node:path';

/** The data folder cannot be created or written; `reason` says why in an operator's words. */
export class DataFolderError extends Error {
  constructor(
    readonly folder: string,
    readonly reason: string,
  ) {
    super(`${folder}: ${reason}`);
    this.name = 'DataFolderError';
  }
}

function writableProblem(dir: string): string | null {
  try {
    fs.accessSync(dir, fs.constants.W_OK);
    return null;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EROFS') return `${dir} is on a read-only file system`;
    if (code === 'EACCES' || code === 'EPERM') return `no permission to write in ${dir}`;
    return `${dir} is not writable (${code})`;
  }
}

/**
 * Creates the data folder when missing. Node's recursive mkdir reports a read-only mount as ENOENT and
 * a file in the way as EEXIST, so on failure the path is examined and the real cause named.
 */
export function ensureDataFolder(root: string): void {
  try {
    makeFolders(path.resolve(root));
  } catch (err) {
    throw new DataFolderError(root, explain(root, err as NodeJS.ErrnoException));
  }
  if (!fs.statSync(root).isDirectory()) throw new DataFolderError(root, 'a file is there, not a folder');
  const problem = writableProblem(root);
  if (problem) throw new DataFolderError(root, problem);
}

/**
 * mkdir -p one level at a time. Node's recursive mkdirSync spins for ever where mkdir answers ENOENT
 * for a parent that exists (under /proc, for one).
 */
function makeFolders(dir: string): void {
  const missing: string[] = [];
  let p = dir;
  while (!fs.existsSync(p)) {
    missing.unshift(p);
    const parent = path.dirname(p);
    if (parent === p) break;
    p = parent;
  }
  for (const m of missing) fs.mkdirSync(m);
}

function explain(root: string, err: NodeJS.ErrnoException): string {
  // The nearest part of the path that exists says what went wrong.
  let existing = path.resolve(root);
  while (!fs.existsSync(existing) && path.dirname(existing) !== existing) existing = path.dirname(existing);
  const isSelf = existing === path.resolve(root);
  if (!fs.statSync(existing).isDirectory()) {
    return isSelf ? 'a file is there, not a folder' : `cannot create it: ${existing} is a file, not a folder`;
  }
  const problem = writableProblem(existing);
  if (problem) return `cannot create it: ${problem}`;
  return `cannot create it: ${err.message}`;
}

/**
 * What an operator needs to know about a file-system error on a file inside the data folder (opening a
 * root-owned block file as another user, a read-only remount, a full disk): the file, and for a
 * permission error who owns it and who ims runs as. Null for an error that is not about a file.
 */
export function fileProblem(err: unknown): string | null {
  const e = err as NodeJS.ErrnoException;
  if (typeof e?.code !== 'string' || typeof e.path !== 'string') return null;
  const file = e.path;
  switch (e.code) {
    case 'EACCES':
    case 'EPERM': {
      let owner = '';
      try {
        const st = fs.statSync(file);
        owner = `, owned by uid ${st.uid} gid ${st.gid} with mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')}`;
      } catch {
        // not even stat-able: the folder above refuses; the code says enough
      }
      const me = process.getuid ? `; ims runs as uid ${process.getuid()} gid ${process.getgid?.()}` : '';
      return `cannot ${e.syscall ?? 'open'} ${file}: permission denied${owner}${me} (${e.code})`;
    }
    case 'EROFS':
      return `cannot ${e.syscall ?? 'open'} ${file}: it is on a read-only file system (EROFS)`;
    case 'ENOSPC':
      return `cannot write ${file}: no space left on the device (ENOSPC)`;
    default:
      return `${file}: ${e.message}`;
  }
}
