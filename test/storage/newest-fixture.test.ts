/**
 * The newest Go ims's folders (queue_format v4): ims reads them as Go's newest answers, writes the same
 * bytes for the same saves, and keeps the same index entries.
 */
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MessageStore, type HistoryMessage } from '../../src/storage/index.js';
import { NEWEST_FIXTURE_ROOT, copyFixtureDir, removeDir, sortedIndex, tempDir } from '../support/fixtures.js';

interface GoMsg {
  MsgID: number;
  DeviceID: number;
  Cmd: number;
  Raw: string;
}
interface Query {
  name: string;
  method: string;
  req: Record<string, number>;
  resp: unknown;
}
interface Save {
  i: number;
  method: 'SavePeerMessage' | 'SavePeerGroupMessage' | 'SaveGroupMessage';
  req: {
    AppID: number;
    Uid?: number;
    GroupID?: number;
    Members?: number[];
    DeviceID: number;
    Cmd: number;
    Raw: string;
  };
  resp: { MsgID: number; PrevMsgID: number } | { MessageIDs: { MsgID: number; PrevMsgID: number }[] };
}
interface NewestManifest {
  saves: Save[];
  queries: Query[];
  extra: {
    files: Record<string, { sha256: string }>;
    clean_index: { peer_index_sorted: number[][]; group_index_sorted: number[][] };
    quirk_probe: { calls: { method: string; req: Save['req']; resp: unknown }[] };
  };
}

let manifest: NewestManifest;
before(() => {
  manifest = JSON.parse(
    fs.readFileSync(path.join(NEWEST_FIXTURE_ROOT, 'manifest.json'), 'utf8'),
  ) as NewestManifest;
});

const toGo = (messages: HistoryMessage[]): GoMsg[] =>
  messages.map((m) => ({
    MsgID: m.msgId,
    DeviceID: Number(m.deviceId),
    Cmd: m.cmd,
    Raw: m.raw.toString('base64'),
  }));

/** One manifest query against the engine, answered in the manifest's JSON shape. */
function runQuery(store: MessageStore, q: Query): unknown {
  const r = q.req;
  const app = BigInt(r.AppID ?? 0);
  switch (q.method) {
    case 'SyncMessage': {
      const res = store.syncMessage(app, BigInt(r.Uid), r.LastMsgID ?? 0);
      return { Messages: toGo(res.messages), LastMsgID: res.lastMsgId, HasMore: res.hasMore };
    }
    case 'SyncGroupMessage': {
      const res = store.syncGroupMessage(app, BigInt(r.GroupID), r.LastMsgID ?? 0, r.Timestamp ?? 0);
      return { Messages: toGo(res.messages), LastMsgID: res.lastMsgId, HasMore: res.hasMore };
    }
    case 'GetLatestMessage':
      return { Messages: toGo(store.getLatestMessages(app, BigInt(r.Uid), r.Limit ?? 0)) };
    case 'GetNewCount':
      return store.getNewCount(app, BigInt(r.Uid), r.LastMsgID ?? 0);
    case 'Ping':
      return 0;
  }
  throw new Error(`unknown method ${q.method}`);
}

function save(store: MessageStore, s: Pick<Save, 'method' | 'req'>): Save['resp'] {
  const r = s.req;
  const raw = Buffer.from(r.Raw, 'base64');
  const [app, dev] = [BigInt(r.AppID), BigInt(r.DeviceID)];
  if (s.method === 'SavePeerGroupMessage') {
    const ids = store.savePeerGroupMessage(app, r.Members!.map(BigInt), dev, r.Cmd, raw);
    return { MessageIDs: ids.map((x) => ({ MsgID: x.msgId, PrevMsgID: x.prevMsgId })) };
  }
  const res =
    s.method === 'SavePeerMessage'
      ? store.savePeerMessage(app, BigInt(r.Uid!), dev, r.Cmd, raw)
      : store.saveGroupMessage(app, BigInt(r.GroupID!), dev, r.Cmd, raw);
  return { MsgID: res.msgId, PrevMsgID: res.prevMsgId };
}

const sha256 = (file: string) => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');

for (const folder of ['clean', 'noindex', 'stale'] as const) {
  describe(`newest Go fixture ${folder}/`, () => {
    let dir: string;
    before(() => {
      dir = copyFixtureDir(folder, NEWEST_FIXTURE_ROOT);
    });
    after(() => {
      if (dir) removeDir(dir);
    });

    it('is detected as v4 and answers every query as the newest Go did on clean/', async () => {
      const store = MessageStore.open({ root: dir });
      try {
        assert.equal(store.queueFormat, 'v4');
        // A Go index carries no log position: even clean/ replays from the older of its two newest entries.
        assert.equal(store.openReport!.index, folder === 'noindex' ? 'rebuilt' : 'repaired');
        for (const q of manifest.queries)
          assert.deepEqual(runQuery(store, q), q.resp, `${folder}: ${q.name}`);
        assert.ok(manifest.queries.length > 300);
      } finally {
        await store.close();
      }
    });

    it('writes index files holding the clean entries at shutdown, message_0 untouched', () => {
      const idx = sortedIndex(dir, 'v4');
      assert.deepEqual(idx.peer, manifest.extra.clean_index.peer_index_sorted);
      assert.deepEqual(idx.group, manifest.extra.clean_index.group_index_sorted);
      assert.equal(sha256(path.join(dir, 'message_0')), manifest.extra.files['clean/message_0'].sha256);
      assert.ok(!fs.existsSync(path.join(dir, 'peer_index')), 'no Go 2.0 index written beside');
    });
  });
}

describe('replaying the newest manifest saves into an empty v4 folder', () => {
  const dir = tempDir();
  after(() => removeDir(dir));

  it('returns the same MsgID and PrevMsgID as Go, a byte-identical message_0 and the same index', async () => {
    const store = MessageStore.open({ root: dir, queueFormat: 'v4' });
    for (const s of manifest.saves) assert.deepEqual(save(store, s), s.resp, `save #${s.i}`);
    for (const q of manifest.queries) assert.deepEqual(runQuery(store, q), q.resp, q.name);
    await store.close();
    assert.equal(sha256(path.join(dir, 'message_0')), manifest.extra.files['clean/message_0'].sha256);
    const idx = sortedIndex(dir, 'v4');
    assert.deepEqual(idx.peer, manifest.extra.clean_index.peer_index_sorted);
    assert.deepEqual(idx.group, manifest.extra.clean_index.group_index_sorted);
  });

  it('reopens without the setting as v4 (the folder records its format)', async () => {
    const store = MessageStore.open({ root: dir });
    try {
      assert.equal(store.queueFormat, 'v4');
      assert.equal(store.openReport!.index, 'loaded');
    } finally {
      await store.close();
    }
  });

  it('refuses bodies Go would zero-fill or empty, naming the problem, and writes nothing', async () => {
    const empty = tempDir();
    const store = MessageStore.open({ root: empty, queueFormat: 'v4' });
    try {
      const end = store.nextId;
      for (const call of manifest.extra.quirk_probe.calls.filter((c) => c.method.startsWith('Save'))) {
        const raw = Buffer.from(call.req.Raw, 'base64');
        const ok = call.req.Cmd === 8 && raw.length >= 24;
        if (ok) continue;
        assert.throws(
          () => save(store, { method: call.method as Save['method'], req: call.req }),
          (err: Error) => /too short for cmd|not a message kind ims stores in a v4 folder/.test(err.message),
        );
      }
      assert.equal(store.nextId, end);
    } finally {
      await store.close();
      removeDir(empty);
    }
  });
});
