import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MessageStore, type HistoryMessage } from '../../src/storage/index.js';
import {
  copyFixtureDir,
  loadManifest,
  removeDir,
  tempDir,
  type GoMessage,
  type Manifest,
  type ManifestQuery,
  sortedIndex,
} from '../support/fixtures.js';
import { expectedNewCount } from '../support/go-model.js';

let manifest: Manifest;
before(() => {
  manifest = loadManifest();
});

function toGo(messages: HistoryMessage[]): GoMessage[] {
  return messages.map((m) => ({
    MsgID: m.msgId,
    DeviceID: Number(m.deviceId),
    Cmd: m.cmd,
    Raw: m.raw.toString('base64'),
  }));
}

/** Runs one manifest query against the engine; returns the answer in the manifest's JSON shape. */
function runQuery(store: MessageStore, q: ManifestQuery): unknown {
  const r = q.req;
  switch (q.method) {
    case 'SyncMessage': {
      const res = store.syncMessage(BigInt(r.AppID), BigInt(r.Uid), r.LastMsgID ?? 0);
      return { Messages: toGo(res.messages), LastMsgID: res.lastMsgId };
    }
    case 'SyncGroupMessage': {
      const res = store.syncGroupMessage(
        BigInt(r.AppID),
        BigInt(r.GroupID ?? 0),
        r.LastMsgID ?? 0,
        r.Timestamp ?? 0,
      );
      return { Messages: toGo(res.messages), LastMsgID: res.lastMsgId };
    }
    case 'GetLatestMessage':
      return toGo(store.getLatestMessages(BigInt(r.AppID), BigInt(r.Uid), r.Limit ?? 0));
    case 'GetNewCount':
      return store.getNewCount(BigInt(r.AppID), BigInt(r.Uid), r.LastMsgID ?? 0);
  }
}

function expected(q: ManifestQuery): unknown {
  if (q.method === 'GetNewCount')
    return expectedNewCount(manifest, q.req.AppID, q.req.Uid, q.req.LastMsgID ?? 0);
  return q.resp;
}

const sha256 = (file: string) => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');

for (const folder of ['clean', 'noindex', 'stale'] as const) {
  describe(`Go fixture ${folder}/`, () => {
    let dir: string;
    before(() => {
      dir = copyFixtureDir(folder);
    });
    after(() => {
      if (dir) removeDir(dir);
    });

    it('opens and answers every manifest query as the spec says', async () => {
      const store = MessageStore.open({ root: dir });
      try {
        const report = store.openReport!;
        // A Go index carries no log position, so even clean/ replays from the older of its two newest entries.
        assert.equal(report.index, folder === 'noindex' ? 'rebuilt' : 'repaired');
        let checked = 0;
        for (const q of manifest.queries) {
          if (q.method === 'GetLatestMessage' && (q.req.Limit ?? 0) < 1) {
            assert.throws(() => runQuery(store, q), /limit must be at least 1/, q.name);
            continue;
          }
          assert.deepEqual(runQuery(store, q), expected(q), `${folder}: ${q.name}`);
          checked++;
        }
        assert.ok(checked > 200, `only ${checked} queries checked`);
      } finally {
        await store.close();
      }
    });

    it('writes on shutdown index files holding the clean entries, and leaves message_0 untouched', () => {
      const idx = sortedIndex(dir);
      assert.deepEqual(idx.peer, manifest.extra.clean_index.peer_index_sorted);
      assert.deepEqual(idx.group, manifest.extra.clean_index.group_index_sorted);
      assert.equal(sha256(path.join(dir, 'message_0')), manifest.extra.files['clean/message_0'].sha256);
    });
  });
}

describe('replaying the manifest saves into an empty folder', () => {
  const dir = tempDir();
  after(() => removeDir(dir));

  it('returns the same ids as Go and writes a byte-identical message_0', async () => {
    const store = MessageStore.open({ root: dir });
    for (const s of manifest.saves) {
      const r = s.req;
      const raw = Buffer.from(r.Raw, 'base64');
      const res =
        s.method === 'SavePeerMessage'
          ? store.savePeerMessage(BigInt(r.AppID), BigInt(r.Uid!), BigInt(r.DeviceID), r.Cmd, raw)
          : store.saveGroupMessage(BigInt(r.AppID), BigInt(r.GroupID!), BigInt(r.DeviceID), r.Cmd, raw);
      assert.equal(res.msgId, s.resp, `save #${s.i}`);
    }
    await store.close();
    assert.equal(sha256(path.join(dir, 'message_0')), manifest.extra.files['clean/message_0'].sha256);
    const idx = sortedIndex(dir);
    assert.deepEqual(idx.peer, manifest.extra.clean_index.peer_index_sorted);
    assert.deepEqual(idx.group, manifest.extra.clean_index.group_index_sorted);
  });

  it('reopens with identical answers', async () => {
    const store = MessageStore.open({ root: dir });
    try {
      assert.equal(store.openReport!.index, 'loaded');
      for (const q of manifest.queries) {
        if (q.method === 'GetLatestMessage' && (q.req.Limit ?? 0) < 1) continue;
        assert.deepEqual(runQuery(store, q), expected(q), q.name);
      }
    } finally {
      await store.close();
    }
  });
});
