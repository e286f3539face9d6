/**
 * `ims upgrade --queue-format v4 DATA_DIR`: switches a v2 (Go ims 2.0) folder to the newest GoBelieve
 * queue format, with the server stopped (the folder lock refuses otherwise). No record is rewritten:
 * message ids are file positions, so every message stays where it is and every client's sync key
 * stays valid. From the log end on, saves write v4 queue records whose chains link back into the v2
 * ones; the v4 index counts the v2 entries, so unread counts start exact. See MessageStore.switchToV4.
 */
import type { QueueFormatName } from '../format/index-file.js';
import { MessageStore } from '../storage/message-store.js';

export interface UpgradeResult {
  /** The format the folder served before; equal to the target when nothing was done. */
  from: QueueFormatName;
  to: QueueFormatName;
  /** First log id written in the new format. */
  since: number;
  users: number;
  groups: number;
  changed: boolean;
}

export async function runUpgrade(
  root: string,
  target: QueueFormatName,
  options: { blockSize: number },
): Promise<UpgradeResult> {
  if (target !== 'v4')
    throw new Error(`only an upgrade to v4 exists (a v4 folder cannot go back to ${target})`);
  const store = MessageStore.open({ root, blockSize: options.blockSize, lockRole: 'ims upgrade' });
  try {
    const from = store.queueFormat;
    if (from === 'v4') {
      const since = store.queueFormatSwitch?.since ?? 0;
      return { from, to: 'v4', since, users: store.peerCount, groups: store.groupCount, changed: false };
    }
    // Whatever an open recovered (a torn tail cut, the index repaired) is made durable first.
    await store.flush();
    const since = store.nextId;
    store.switchToV4(since);
    return { from, to: 'v4', since, users: store.peerCount, groups: store.groupCount, changed: true };
  } finally {
    // Saves the v4 index files, so the next start loads them instead of rebuilding.
    await store.close();
  }
}
