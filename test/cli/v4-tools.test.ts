/**
 * The operator tools on v4 folders (the newest GoBelieve store): verify, inspect and repair read the
 * folder's queue format as the engine does, on the newest Go fixture and on a folder switched from v2.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MessageStore } from '../../src/storage/index.js';
import {
  FIXTURE_ROOT,
  NEWEST_FIXTURE_ROOT,
  copyFixtureDir,
  removeDir,
  sortedIndex,
} from '../support/fixtures.js';
import { ims, type CliRun as Run } from '../support/cli-runner.js';

interface NewestManifest {
  extra: {
    files: Record<string, { size: number }>;
    clean_index: { peer_index_sorted: number[][]; group_index_sorted: number[][] };
    /** Per queue "appid/uid": its batch marks as [seq, msgid, entry id]. */
    batch_marks: Record<string, { queue_length: number; last_batch_id: number; marks: number[][] }>;
  };
}

let manifest: NewestManifest;
let LOG_SIZE: number;
before(() => {
  manifest = JSON.parse(
    fs.readFileSync(path.join(NEWEST_FIXTURE_ROOT, 'manifest.json'), 'utf8'),
  ) as NewestManifest;
  LOG_SIZE = manifest.extra.files['clean/message_0'].size;
});

function json(run: Run): any {
  return JSON.parse(run.stdout);
}

const dirs: string[] = [];
function copy(name: 'clean' | 'noindex' | 'stale', root = NEWEST_FIXTURE_ROOT): string {
  const dir = copyFixtureDir(name, root);
  dirs.push(dir);
  return dir;
}
after(() => dirs.forEach(removeDir));

/** Byte offset in an index file of the entry for (appid, id). */
function indexEntryOffset(file: string, entrySize: number, appid: number, id: number): number {
  const data = fs.readFileSync(file);
  for (let off = 0; off < data.length; off += entrySize) {
    if (data.readBigInt64BE(off) === BigInt(appid) && data.readBigInt64BE(off + 8) === BigInt(id)) return off;
  }
  throw new Error(`no entry ${appid}:${id} in ${file}`);
}

/** Offsets inside a v4 queue record's body (after MAGIC and the 12-byte header). */
const BODY = 16;
const SEQ = BODY + 32;
const PREV_BATCH = BODY + 56;

describe('ims verify on the newest Go fixture (queue_format v4)', () => {
  it('finds clean/ clean: v4 index files equal the rebuild, every chain, seq and batch link checked', async () => {
    const dir = copy('clean');
    const run = await ims('verify', dir);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.match(run.stdout, /^queue format v4 \(MSG_OFFLINE_V4 queue records\)$/m);
    assert.match(run.stdout, /peer_index\.v3: 89 entries, equal to the index rebuilt from the blocks/);
    assert.match(run.stdout, /group_index\.v2: 8 entries, equal/);
    assert.doesNotMatch(run.stdout, /peer_index is missing/);
    assert.match(run.stdout, /\bclean$/m);
    const report = json(await ims('verify', dir, '--json'));
    assert.equal(report.clean, true);
    assert.deepEqual(report.queueFormat, { format: 'v4', evidence: 'MSG_OFFLINE_V4 queue records' });
    assert.equal(report.records, 20450);
    assert.equal(report.logEnd, LOG_SIZE);
    assert.equal(report.chains.peerEntries, 9962);
    assert.equal(report.chains.groupEntries, 263);
    assert.equal(report.chains.users, 89);
    assert.equal(report.chains.groups, 8);
    assert.equal(report.chains.seqsChecked, 9962 + 263);
    assert.equal(report.chains.badSeqs, 0);
    const marks = Object.values(manifest.extra.batch_marks).reduce((n, q) => n + q.marks.length, 0);
    assert.equal(report.chains.batchMarks, marks);
    assert.equal(
      report.chains.badLinks + report.chains.badMessagePointers + report.chains.malformedEntries,
      0,
    );
  });

  it('noindex/: the v4 index files are missing, which repair can fix; nothing else', async () => {
    const dir = copy('noindex');
    const report = json(await ims('verify', dir, '--json'));
    assert.equal(report.queueFormat.format, 'v4');
    assert.equal(report.index.peer.status, 'missing');
    assert.equal(report.index.group.status, 'missing');
    assert.deepEqual(
      report.problems.map((p: any) => `${p.kind} ${p.file} ${p.repairable}`),
      ['index-missing peer_index.v3 true', 'index-missing group_index.v2 true'],
    );
    assert.equal(report.chains.peerEntries, 9962);
  });

  it('stale/: both index files are stale (repair will update them), as for Go 2.0', async () => {
    const dir = copy('stale');
    const run = await ims('verify', dir);
    assert.equal(run.code, 1);
    assert.match(run.stdout, /peer_index\.v3: stale \(repair will update it\)/);
    assert.match(run.stdout, /group_index\.v2: stale \(repair will update it\)/);
    const report = json(await ims('verify', dir, '--json'));
    assert.deepEqual(
      report.problems.map((p: any) => `${p.kind} ${p.repairable}`),
      ['index-stale true', 'index-stale true'],
    );
    assert.equal(report.index.peer.wrongEntries, 0);
    assert.equal(report.index.group.wrongEntries, 0);
  });

  it('the 2.0 fixture still reads as v2 with its own index files', async () => {
    const report = json(await ims('verify', copy('clean', FIXTURE_ROOT), '--json'));
    assert.equal(report.clean, true);
    assert.equal(report.queueFormat.format, 'v2');
    assert.equal(report.index.peer.file, 'peer_index');
    assert.equal(report.chains.seqsChecked, 0);
  });

  it('reports a wrong seq and batch id in peer_index.v3 as wrong entries; repair rebuilds the v4 files', async () => {
    const dir = copy('clean');
    const file = path.join(dir, 'peer_index.v3');
    const data = fs.readFileSync(file);
    const a = indexEntryOffset(file, 56, 7, 10001);
    assert.equal(data.readBigInt64BE(a + 48), 4560n);
    data.writeBigInt64BE(4561n, a + 48); // last_seq_id
    const b = indexEntryOffset(file, 56, 7, 10002);
    data.writeBigInt64BE(0n, b + 40); // last_batch_id
    fs.writeFileSync(file, data);
    const run = await ims('verify', dir);
    assert.equal(run.code, 1);
    assert.match(run.stdout, /peer_index\.v3: 2 entries disagree with the index rebuilt from the blocks/);
    const report = json(await ims('verify', dir, '--json'));
    assert.equal(report.index.peer.status, 'wrong');
    assert.equal(report.index.peer.wrongEntries, 2);
    assert.equal(report.index.group.status, 'ok');
    assert.ok(
      report.index.peer.examples.some((x: string) =>
        /^7:10001 -> .*last_seq_id=4561 \(the blocks say .*last_seq_id=4560\)$/.test(x),
      ),
      report.index.peer.examples.join('\n'),
    );

    const fix = await ims('repair', dir);
    assert.equal(fix.code, 0, fix.stdout + fix.stderr);
    assert.match(fix.stdout, /moved peer_index\.v3 aside to peer_index\.v3\.wrong-/);
    assert.match(fix.stdout, /wrote peer_index\.v3 \(89 entries\), group_index\.v2 \(8 entries\)/);
    assert.equal((await ims('verify', dir)).code, 0);
    const idx = sortedIndex(dir, 'v4');
    assert.deepEqual(idx.peer, manifest.extra.clean_index.peer_index_sorted);
    assert.deepEqual(idx.group, manifest.extra.clean_index.group_index_sorted);
    assert.ok(!fs.existsSync(path.join(dir, 'peer_index')) && !fs.existsSync(path.join(dir, 'group_index')));
  });
});

describe('ims verify: v4 chains', () => {
  it('reports broken batch links and a wrong entry seq, which repair cannot fix', async () => {
    const dir = copy('clean');
    const file = path.join(dir, 'message_0');
    const log = fs.readFileSync(file);
    const [m1000, m2000, m3000, m4000] = manifest.extra.batch_marks['7/10001'].marks.map((m) => m[2]);
    // The marks are as Go wrote them: seq a multiple of 1000, each linked to the one before.
    assert.equal(log.readBigInt64BE(m3000 + SEQ), 3000n);
    assert.equal(log.readBigInt64BE(m3000 + PREV_BATCH), BigInt(m2000));
    assert.equal(log.readBigInt64BE(m2000 + PREV_BATCH), BigInt(m1000));
    // Mark 3000 skips a mark; mark 4000 links to a message, not an entry; mark 2000's seq is off by one.
    log.writeBigInt64BE(BigInt(m1000), m3000 + PREV_BATCH);
    const msgOfMark2000 = manifest.extra.batch_marks['7/10001'].marks[1][1];
    log.writeBigInt64BE(BigInt(msgOfMark2000), m4000 + PREV_BATCH);
    log.writeBigInt64BE(2001n, m2000 + SEQ);
    fs.writeFileSync(file, log);

    const run = await ims('verify', dir, '--json');
    assert.equal(run.code, 1);
    const report = json(run);
    assert.equal(report.chains.badLinks, 2);
    assert.equal(report.chains.badSeqs, 1);
    const kinds = report.problems.map((p: any) => `${p.kind} ${p.offset} ${p.repairable}`).sort();
    assert.deepEqual(
      kinds,
      [`chain-pointer ${m3000} false`, `chain-pointer ${m4000} false`, `queue-seq ${m2000} false`].sort(),
    );
    const text = await ims('verify', dir);
    assert.match(
      text.stdout,
      new RegExp(
        `message_0 offset ${m3000}: prev_batch_msgid of 7:10001 ${m1000} points at the batch mark at seq 1000, ` +
          `not the previous one of an entry at seq 3000 \\(seq 2000\\)`,
      ),
    );
    assert.match(
      text.stdout,
      new RegExp(
        `prev_batch_msgid of 7:10001 ${msgOfMark2000} points at a MSG_\\w+ record, not a user queue entry`,
      ),
    );
    assert.match(text.stdout, new RegExp(`message_0 offset ${m2000}: seq 2001 of 7:10001 should be 2000`));
    const fix = await ims('repair', dir);
    assert.equal(fix.code, 1);
    assert.match(fix.stdout, /not repairable by ims repair/);
  });

  it('reports a v2 queue record in a v4 folder as an entry of the other format', async () => {
    const dir = copy('clean');
    const file = path.join(dir, 'message_0');
    const log = fs.readFileSync(file);
    const entry = manifest.extra.batch_marks['7/10001'].marks[0][2];
    assert.equal(log[entry + 12], 248);
    log[entry + 12] = 250;
    fs.writeFileSync(file, log);
    const report = json(await ims('verify', dir, '--json'));
    assert.equal(report.chains.foreignEntries, 1);
    const p = report.problems.find((x: any) => x.kind === 'foreign-entry');
    assert.equal(p.offset, entry);
    assert.equal(p.repairable, false);
    assert.match(p.message, /MSG_OFFLINE_V2 is not a queue record of v4, the folder's queue format$/);
  });

  it('refuses a folder with MSG_OFFLINE_V3 records with the engine message', async () => {
    const dir = copy('noindex');
    const file = path.join(dir, 'message_0');
    const log = fs.readFileSync(file);
    let off = 32;
    while (log[off + 12] !== 248) off += 20 + log.readInt32BE(off + 4);
    log[off + 12] = 249;
    fs.writeFileSync(file, log);
    // The engine's refusal, on a copy (its path put back): the tools must say the same.
    const other = copyOf(dir);
    let engine = '';
    try {
      MessageStore.open({ root: other });
    } catch (err) {
      engine = (err as Error).message.replaceAll(other, dir);
    }
    assert.match(engine, /holds MSG_OFFLINE_V3 queue records .* which ims cannot read/);
    for (const command of ['verify', 'inspect', 'repair']) {
      const run = await ims(command, dir);
      assert.equal(run.code, 1, command);
      assert.equal(run.stderr, `ims ${command}: ${engine}\n`, command);
    }
    assert.deepEqual(fs.readdirSync(dir), ['message_0'], 'repair wrote nothing');
  });
});

/** A copy of a folder (registered for removal). */
function copyOf(src: string): string {
  const dir = fs.mkdtempSync(`${src}-copy-`);
  for (const f of fs.readdirSync(src)) fs.copyFileSync(path.join(src, f), path.join(dir, f));
  dirs.push(dir);
  return dir;
}

describe('ims repair on v4 folders', () => {
  it('rebuilds noindex/ into peer_index.v3 and group_index.v2 equal to the clean index, writing no v2 files', async () => {
    const dir = copy('noindex');
    const dry = await ims('repair', dir, '--dry-run');
    assert.equal(dry.code, 0, dry.stdout + dry.stderr);
    assert.match(dry.stdout, /rebuild peer_index\.v3 and group_index\.v2 from the blocks/);
    const fix = await ims('repair', dir);
    assert.equal(fix.code, 0, fix.stdout + fix.stderr);
    assert.match(fix.stdout, /index rebuilt from all blocks/);
    assert.match(
      fix.stdout,
      /wrote peer_index\.v3 \(89 entries\), group_index\.v2 \(8 entries\) and index_state/,
    );
    assert.match(fix.stdout, /after repair the folder verifies clean/);
    const idx = sortedIndex(dir, 'v4');
    assert.deepEqual(idx.peer, manifest.extra.clean_index.peer_index_sorted);
    assert.deepEqual(idx.group, manifest.extra.clean_index.group_index_sorted);
    const files = fs.readdirSync(dir);
    assert.ok(!files.includes('peer_index') && !files.includes('group_index'), files.join(', '));
    assert.ok(!files.includes('queue_format'), 'a Go folder keeps its own files only');
    assert.equal((await ims('verify', dir)).code, 0);
  });

  it('updates stale/ to the clean index', async () => {
    const dir = copy('stale');
    const fix = await ims('repair', dir);
    assert.equal(fix.code, 0, fix.stdout + fix.stderr);
    assert.match(fix.stdout, /index updated from log position/);
    const idx = sortedIndex(dir, 'v4');
    assert.deepEqual(idx.peer, manifest.extra.clean_index.peer_index_sorted);
    assert.deepEqual(idx.group, manifest.extra.clean_index.group_index_sorted);
    assert.ok(!fs.existsSync(path.join(dir, 'peer_index')));
  });
});

describe('ims inspect on v4 folders', () => {
  const dir = copyFixtureDir('clean', NEWEST_FIXTURE_ROOT);
  dirs.push(dir);

  it('--user names the format and shows each entry with its seq, newest first', async () => {
    const run = await ims('inspect', dir, '--user', '7:10001', '--limit', '3');
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.match(run.stdout, /^queue format v4 \(MSG_OFFLINE_V4 queue records\)\n/);
    const q = manifest.extra.batch_marks['7/10001'];
    assert.match(
      run.stdout,
      new RegExp(
        `^user 7:10001: last_msgid=\\d+ last_id=\\d+ last_peer_id=\\d+ last_batch_id=${q.last_batch_id} last_seq_id=4560 `,
        'm',
      ),
    );
    assert.deepEqual(
      [...run.stdout.matchAll(/^  appid=7 uid=10001 msgid=\d+ deviceId=\d+ seq=(\d+) /gm)].map((m) =>
        Number(m[1]),
      ),
      [4560, 4559, 4558],
    );
    const asJson = json(
      await ims('inspect', dir, '--user', '7:10001', '--limit', '2', '--json', '--rebuild'),
    );
    assert.equal(asJson.queueFormat.format, 'v4');
    assert.equal(asJson.heads.lastSeq, 4560);
    assert.equal(asJson.heads.lastBatchId, q.last_batch_id);
    assert.match(asJson.headsFrom, /^rebuilt from all blocks/);
    assert.deepEqual(
      asJson.entries.map((e: any) => [e.entry.cmdName, e.seq]),
      [
        ['MSG_OFFLINE_V4', 4560],
        ['MSG_OFFLINE_V4', 4559],
      ],
    );
    assert.equal(asJson.more, true);
  });

  it('--group walks a super group queue of MSG_GROUP_OFFLINE entries', async () => {
    const run = await ims('inspect', dir, '--group', '7:100', '--limit', '500', '--json');
    assert.equal(run.code, 0, run.stdout + run.stderr);
    const r = json(run);
    assert.ok(r.entries.length >= 10);
    assert.equal(r.more, false);
    assert.deepEqual(
      r.entries.map((e: any) => e.seq),
      r.entries.map((_: unknown, i: number) => r.heads.lastSeq - i),
    );
    assert.ok(r.entries.every((e: any) => e.entry.cmdName === 'MSG_GROUP_OFFLINE' && e.message));
  });

  it('--at decodes a v4 queue record with the message it points at', async () => {
    const [, msgid, entryId] = manifest.extra.batch_marks['7/10001'].marks[0];
    const run = await ims('inspect', dir, '--at', String(entryId));
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.match(
      run.stdout,
      new RegExp(
        `^#${entryId} MSG_OFFLINE_V4 \\(message_0 offset ${entryId}, 64 body bytes(, flag 0x4)?\\)\\n` +
          `  appid=7 uid=10001 msgid=${msgid} deviceId=\\d+ seq=1000 prevMsgid=\\d+ prevPeerMsgid=\\d+ prevBatchMsgid=0 group=(true|false)$`,
        'm',
      ),
    );
    assert.match(run.stdout, new RegExp(`points at:\\n    #${msgid} MSG_`));
    const asJson = json(await ims('inspect', dir, '--at', String(entryId), '--json'));
    assert.equal(asJson.queueFormat.format, 'v4');
    assert.equal(asJson.record.fields.seq, 1000);
    assert.equal(asJson.pointsAt.id, msgid);
  });
});

describe('a folder switched from v2 to v4', () => {
  let dir: string;
  let since: number;
  const GID = 2n ** 40n + 100n;
  before(async () => {
    dir = copy('clean', FIXTURE_ROOT);
    const store = MessageStore.open({ root: dir });
    store.switchToV4();
    since = store.queueFormatSwitch!.since;
    const body = Buffer.concat([Buffer.alloc(24), Buffer.from('after the switch')]);
    // 7:10031 has v2 entries: with these its count crosses 1000, so a v4 batch mark follows v2 entries.
    for (let i = 0; i < 1000; i++) store.savePeerMessage(7n, 10031n, 1n, 4, body);
    for (let i = 0; i < 3; i++) store.saveGroupMessage(7n, GID, 1n, 8, body);
    await store.close();
  });

  it('verifies clean, naming the switch point; v2 entries below it count into each sequence', async () => {
    const run = await ims('verify', dir);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.match(
      run.stdout,
      new RegExp(
        `^queue format v4 \\(its queue_format file\\), switched from v2 at id ${since} \\(\\d{4}-\\d\\d-\\d\\dT[^)]+\\)$`,
        'm',
      ),
    );
    assert.match(run.stdout, /peer_index\.v3: 203 entries, equal to the index rebuilt from the blocks/);
    const report = json(await ims('verify', dir, '--json'));
    assert.equal(report.queueFormat.switched.since, since);
    assert.equal(report.queueFormat.switched.from, 'v2');
    assert.equal(report.chains.peerEntries, 2000 + 1000);
    assert.equal(report.chains.groupEntries, 500 + 3);
    assert.equal(report.chains.seqsChecked, 1003);
    assert.equal(report.chains.batchMarks, 1);
  });

  it('inspect names the switch; v2 entries get their seq counted from the head', async () => {
    const run = await ims('inspect', dir, '--user', '7:10031', '--limit', '2000', '--json');
    assert.equal(run.code, 0, run.stdout + run.stderr);
    const r = json(run);
    assert.equal(r.queueFormat.switched.since, since);
    const n = r.heads.lastSeq;
    assert.equal(r.entries.length, n);
    assert.deepEqual(
      r.entries.map((e: any) => e.seq),
      r.entries.map((_: unknown, i: number) => n - i),
    );
    const v2 = r.entries.filter((e: any) => e.entry.cmdName === 'MSG_OFFLINE_V2');
    assert.equal(v2.length, n - 1000);
    assert.ok(v2.every((e: any) => e.entry.id < since));
    const text = await ims('inspect', dir, '--user', '7:10031', '--limit', '2000');
    assert.match(
      text.stdout,
      new RegExp(`^queue format v4 \\(its queue_format file\\), switched from v2 at id ${since} \\(`),
    );
    assert.match(text.stdout, /^  seq 1 \(counted: a v2 entry carries none\)$/m);
  });
});
