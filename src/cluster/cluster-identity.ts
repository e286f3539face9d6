import * as fs from 'node:fs';
import * as path from 'node:path';

/** The file in a data folder that says which cluster and shard it belongs to (Go ignores it). */
export const CLUSTER_IDENTITY_FILE = 'cluster_identity';

export interface ClusterIdentity {
  cluster: string;
  shard: number;
}

/**
 * Checks that a data folder belongs to this cluster and shard, and records it when the folder has no
 * identity yet. Returns a problem sentence when it belongs elsewhere (never overwritten then).
 */
export function claimDataFolder(root: string, want: ClusterIdentity): string | null {
  const file = path.join(root, CLUSTER_IDENTITY_FILE);
  if (fs.existsSync(file)) {
    let have: ClusterIdentity;
    try {
      have = JSON.parse(fs.readFileSync(file, 'utf8')) as ClusterIdentity;
    } catch (err) {
      return `${file} cannot be read: ${(err as Error).message}`;
    }
    if (have.cluster !== want.cluster || have.shard !== want.shard) {
      return (
        `the data folder belongs to cluster "${have.cluster}" shard ${have.shard}, ` +
        `not cluster "${want.cluster}" shard ${want.shard}`
      );
    }
    return null;
  }
  const tmp = `${file}.tmp`;
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.writeSync(fd, JSON.stringify(want) + '\n');
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
  return null;
}
