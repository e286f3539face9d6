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
