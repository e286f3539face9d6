/** Access to the Go-written fixtures in test/fixtures (read-only: tests work on copies in temp folders). */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root (tests run from dist/test/...). */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

export const FIXTURE_ROOT =
  process.env.IMS_FIXTURES ?? path.resolve(REPO_ROOT, 'test/fixtures/go-ims-2.0/small');

export interface GoMessage {
  MsgID: number;
  DeviceID: number;
  Cmd: number;
  Raw: string;
}

export interface ManifestSave {
  i: number;
  kind: string;
  method: 'SavePeerMessage' | 'SaveGroupMessage';
  req: { AppID: number; Uid?: number; GroupID?: number; DeviceID: number; Cmd: number; Raw: string };
  resp: number;
}

export interface ManifestQuery {
  name: string;
  method: 'SyncMessage' | 'SyncGroupMessage' | 'GetLatestMessage' | 'GetNewCount';
  req: {
    AppID: number;
    Uid: number;
    DeviceID?: number;
    GroupID?: number;
    LastMsgID?: number;
    Timestamp?: number;
    Limit?: number;
  };
  resp: unknown;
  resp_stale?: unknown;
}

export interface Manifest {
  saves: ManifestSave[];
  queries: ManifestQuery[];
  extra: {
    files: Record<string, { size: number; sha256: string }>;
    clean_index: { peer_index_sorted: number[][]; group_index_sorted: number[][] };
    stale_index: { peer_index_sorted: number[][]; group_index_sorted: number[][] };
  };
}

let manifest: Manifest | null = null;
export function loadManifest(): Manifest {
  manifest ??= JSON.parse(fs.readFileSync(path.join(FIXTURE_ROOT, 'manifest.json'), 'utf8')) as Manifest;
  return manifest;
}

export function fixturePath(...parts: string[]): string {
  return path.join(FIXTURE_ROOT, ...parts);
}

/** A new empty temp folder, removed by `cleanup`. */
export function tempDir(prefix = 'ims-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** The fixtures captured from the newest Go ims (queue_format v4). */
export const NEWEST_FIXTURE_ROOT = path.resolve(REPO_ROOT, 'test/fixtures/go-ims-newest/small');

/** Copies a fixture data folder (clean, noindex, stale) into a new temp folder, writable. */
export function copyFixtureDir(name: 'clean' | 'noindex' | 'stale', root = FIXTURE_ROOT): string {
  const dir = tempDir(`ims-${name}-`);
  for (const f of fs.readdirSync(path.join(root, name))) {
    fs.copyFileSync(path.join(root, name, f), path.join(dir, f));
    fs.chmodSync(path.join(dir, f), 0o644);
  }
  return dir;
}

export function removeDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}

/**
 * Entries of a folder's index files, sorted (files are in any order): v2 peer_index [appid, uid,
 * last_id, last_peer_id] and group_index; v4 peer_index.v3 and group_index.v2.
 */
export function sortedIndex(
  dir: string,
  format: 'v2' | 'v4' = 'v2',
): { peer: number[][]; group: number[][] } {
  const read = (name: string, size: number) => {
    const data = fs.readFileSync(path.join(dir, name));
    const rows: number[][] = [];
    for (let off = 0; off < data.length; off += size) {
      const row: number[] = [];
      for (let f = 0; f < size; f += 8) row.push(Number(data.readBigInt64BE(off + f)));
      rows.push(row);
    }
    return rows.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  };
  return format === 'v4'
    ? { peer: read('peer_index.v3', 56), group: read('group_index.v2', 48) }
    : { peer: read('peer_index', 32), group: read('group_index', 24) };
}
