import * as fs from 'node:fs';
import * as path from 'node:path';

/** The file in a data folder that says which cluster, shard and node it belongs to (Go ignores it). */
export const CLUSTER_IDENTITY_FILE = 'cluster_identity';

export interface ClusterIdentity {
  cluster: string;
  shard: number;
  /**
   * The node name the folder joined its shard under. The in-sync set names data, not processes: a node
   * keeps its name across restarts, and a node whose folder is new gets a new name (it holds nothing).
   */
  node?: string;
}

/** The folder's identity, or null when it has none yet. Throws a sentence when it cannot be read. */
export function readDataFolderIdentity(root: string): ClusterIdentity | null {
  const file = path.join(root, CLUSTER_IDENTITY_FILE);
  if (!fs.existsSync(file)) return null;
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as ClusterIdentity;
  } catch (err) {
    throw new Error(`${file} cannot be read: ${(err as Error).message}`);
  }
}

/**
 * Checks that a data folder belongs to this cluster and shard, and records it when the folder has no
 * identity yet. Returns a problem sentence when it belongs elsewhere (never overwritten then).
 */
export function claimDataFolder(root: string, want: ClusterIdentity): string | null {
  let have: ClusterIdentity | null;
  try {
    have = readDataFolderIdentity(root);
  } catch (err) {
    return (err as Error).message;
  }
  if (have) {
    if (have.cluster !== want.cluster || have.shard !== want.shard) {
      return (
        `the data folder belongs to cluster "${have.cluster}" shard ${have.shard}, ` +
        `not cluster "${want.cluster}" shard ${want.shard}`
      );
    }
    return null;
  }
  writeDataFolderIdentity(root, want);
  return null;
}

/** Writes the identity file atomically and durably (temp file, fsync, rename, fsync of the folder). */
export function writeDataFolderIdentity(root: string, identity: ClusterIdentity): void {
  const file = path.join(root, CLUSTER_IDENTITY_FILE);
  const tmp = `${file}.tmp`;
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.writeSync(fd, JSON.stringify(identity) + '\n');
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  const dir = fs.openSync(root, 'r');
  try {
    fs.fsyncSync(dir);
  } finally {
    fs.closeSync(dir);
  }
}
