import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ProgressBar } from '../../src/cli/progress.js';
import { MessageStore } from '../../src/storage/index.js';
import {
  copyFixtureDir,
  loadManifest,
  removeDir,
  tempDir,
  type GoMessage,
  type Manifest,
  sortedIndex,
} from '../support/fixtures.js';
import { startServer } from '../support/server-process.js';
import { ims, type CliRun as Run } from '../support/cli-runner.js';

let manifest: Manifest;
/** Size of the fixture's clean/message_0 (the end of its log). */
let LOG_SIZE: number;
/** The id of a record in the middle of message_0 (a message saved half-way through the workload). */
let MID_ID: number;
before(() => {
  manifest = loadManifest();
  LOG_SIZE = manifest.extra.files['clean/message_0'].size;
  MID_ID = manifest.saves[1200].resp;
});

const dirs: string[] = [];
function copy(name: 'clean' | 'noindex' | 'stale'): string {
  const dir = copyFixtureDir(name);
  dirs.push(dir);
  return dir;
}
after(() => dirs.forEach(removeDir));

/** sha256 of every file of a folder, by name. */
function fingerprint(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of fs.readdirSync(dir).sort()) {
    out[f] = crypto
      .createHash('sha256')
      .update(fs.readFileSync(path.join(dir, f)))
      .digest('hex');
  }
  return out;
}

function json(run: Run): any {
  return JSON.parse(run.stdout);
}

describe('ims verify', () => {
  it('finds the Go clean/ folder clean: its index equals the one rebuilt from the blocks', async () => {
    const dir = copy('clean');
    const run = await ims('verify', dir);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.match(run.stdout, /peer_index: 203 entries, equal to the index rebuilt from the blocks/);
    assert.match(run.stdout, /group_index: 20 entries, equal/);
    assert.match(run.stdout, /\bclean$/m);
    const report = json(await ims('verify', dir, '--json'));
    assert.equal(report.clean, true);
    assert.equal(report.records, 5000);
    assert.equal(report.logEnd, LOG_SIZE);
    assert.equal(report.chains.peerEntries, 2000);
    assert.equal(report.chains.groupEntries, 500);
    assert.equal(report.chains.badLinks + report.chains.badMessagePointers, 0);
  });

  it('reports a stale index as stale, distinct from wrong', async () => {
    const dir = copy('stale');
    const run = await ims('verify', dir);
    assert.equal(run.code, 1);
    assert.match(run.stdout, /peer_index: stale \(repair will update it\)/);
    const report = json(await ims('verify', dir, '--json'));
    assert.equal(report.index.peer.status, 'stale');
    assert.equal(report.index.group.status, 'stale');
    assert.equal(report.index.peer.wrongEntries, 0);
    assert.ok(report.index.peer.staleEntries > 0);
  });

  it('reports a truncated peer_index', async () => {
    const dir = copy('clean');
    const file = path.join(dir, 'peer_index');
    fs.truncateSync(file, fs.statSync(file).size - 10);
    const run = await ims('verify', dir, '--json');
    assert.equal(run.code, 1);
    const report = json(run);
    assert.equal(report.index.peer.status, 'truncated');
    assert.ok(report.problems.some((p: any) => p.kind === 'index-truncated' && p.file === 'peer_index'));
  });

  it('reports index entries that point past the log', async () => {
    const dir = copy('clean');
    const file = path.join(dir, 'peer_index');
    const data = fs.readFileSync(file);
    data.writeBigInt64BE(BigInt(LOG_SIZE + 1000), 3 * 32 + 16);
    fs.writeFileSync(file, data);
    const run = await ims('verify', dir);
    assert.equal(run.code, 1);
    assert.match(run.stdout, /peer_index: 1 of 203 entries point past the end of the log \(437357\)/);
  });

  it('reports an index entry that disagrees with the blocks as wrong, and repair rebuilds it', async () => {
    const dir = copy('clean');
    const file = path.join(dir, 'group_index');
    const data = fs.readFileSync(file);
    // An older (real) record id: inside the log, but not the group's newest entry.
    data.writeBigInt64BE(BigInt(MID_ID), 2 * 24 + 16);
    fs.writeFileSync(file, data);
    const report = json(await ims('verify', dir, '--json'));
    assert.equal(report.index.group.status, 'wrong');
    assert.equal(report.index.group.wrongEntries, 1);
    const fix = await ims('repair', dir);
    assert.equal(fix.code, 0, fix.stdout + fix.stderr);
    assert.match(fix.stdout, /moved group_index aside to group_index\.wrong-/);
    assert.equal((await ims('verify', dir)).code, 0);
    assert.deepEqual(sortedIndex(dir).group, manifest.extra.clean_index.group_index_sorted);
  });

  it('reports a flipped byte mid-block with file and offset; repair refuses to cut good records', async () => {
    for (const [what, at] of [
      ['magic', MID_ID],
      ['length', MID_ID + 4],
    ] as const) {
      const dir = copy('clean');
      const file = path.join(dir, 'message_0');
      const data = fs.readFileSync(file);
      data[at] ^= 0x40;
      fs.writeFileSync(file, data);
      const run = await ims('verify', dir);
      assert.equal(run.code, 1, what);
      assert.match(
        run.stdout,
        new RegExp(`message_0 offset ${MID_ID}: .*whole records follow at offset \\d+`),
        what,
      );
      const report = json(await ims('verify', dir, '--json'));
      const bad = report.problems.find((p: any) => p.kind === 'damaged-record');
      assert.equal(bad.file, 'message_0');
      assert.equal(bad.offset, MID_ID);
      assert.equal(report.blocks[0].status, 'damaged');

      const before = fingerprint(dir);
      const fix = await ims('repair', dir);
      assert.equal(fix.code, 1, what);
      assert.match(fix.stdout, /refused: .*would destroy good records, so nothing was changed/);
      assert.deepEqual(fingerprint(dir), before, 'repair changed a damaged folder');
    }
  });
});

describe('ims verify: chains', () => {
  it('reports queue links that do not point backwards into their own queue, which repair cannot fix', async () => {
    const dir = copy('clean');
    const file = path.join(dir, 'message_0');
    const log = fs.readFileSync(file);
    // Entry 31825 is user 7:10031's second queue entry (its prev links point at 129).
    const entry = 31825;
    assert.equal(log.readBigInt64BE(entry + 16 + 32), 129n);
    // prev_msgid: forward, past the entry; prev_peer_msgid: another user's entry; msgid: a queue entry.
    log.writeBigInt64BE(BigInt(entry + 1000), entry + 16 + 32);
    const other = manifest.saves.find(
      (s) => s.method === 'SavePeerMessage' && s.req.Uid !== 10031 && s.resp < entry,
    )!;
    const otherEntryId = other.resp + 20 + Buffer.from(other.req.Raw, 'base64').length;
    assert.equal(log.readUInt8(otherEntryId + 12), 250, 'an MSG_OFFLINE_V2 record');
    log.writeBigInt64BE(BigInt(otherEntryId), entry + 16 + 40);
    log.writeBigInt64BE(129n, entry + 16 + 16);
    fs.writeFileSync(file, log);
    const run = await ims('verify', dir, '--json');
    assert.equal(run.code, 1);
    const report = json(run);
    assert.equal(report.chains.badLinks, 2);
    assert.equal(report.chains.badMessagePointers, 1);
    const kinds = report.problems.map((p: any) => `${p.kind} ${p.offset}`);
    assert.ok(kinds.includes(`chain-pointer ${entry}`), kinds.join(', '));
    assert.ok(kinds.includes(`message-pointer ${entry}`), kinds.join(', '));
    const text = await ims('verify', dir);
    assert.match(text.stdout, /prev_msgid of 7:10031 32825 does not point backwards/);
    assert.match(
      text.stdout,
      new RegExp(
        `prev_peer_msgid of 7:10031 ${otherEntryId} points at an entry of user ${other.req.AppID}:${other.req.Uid}, not of 7:10031`,
      ),
    );
    assert.match(text.stdout, /msgid 129 points at a queue entry \(MSG_OFFLINE_V2\), not a message/);
    const fix = await ims('repair', dir);
    assert.equal(fix.code, 1);
    assert.match(fix.stdout, /not repairable by ims repair/);
  });
});

describe('ims repair', () => {
  it('rebuilds the missing index of noindex/ (verify then finds it clean)', async () => {
    const dir = copy('noindex');
    const run = await ims('verify', dir);
    assert.equal(run.code, 1);
    assert.match(run.stdout, /peer_index is missing/);
    const fix = await ims('repair', dir);
    assert.equal(fix.code, 0, fix.stdout + fix.stderr);
    assert.match(fix.stdout, /index rebuilt from all blocks/);
    assert.match(fix.stdout, /after repair the folder verifies clean/);
    assert.equal((await ims('verify', dir)).code, 0);
    const idx = sortedIndex(dir);
    assert.deepEqual(idx.peer, manifest.extra.clean_index.peer_index_sorted);
    assert.deepEqual(idx.group, manifest.extra.clean_index.group_index_sorted);
  });

  it('updates the stale index of stale/ to the clean one', async () => {
    const dir = copy('stale');
    const fix = await ims('repair', dir);
    assert.equal(fix.code, 0, fix.stdout + fix.stderr);
    assert.match(fix.stdout, /index updated from log position/);
    assert.equal((await ims('verify', dir)).code, 0);
    const idx = sortedIndex(dir);
    assert.deepEqual(idx.peer, manifest.extra.clean_index.peer_index_sorted);
    assert.deepEqual(idx.group, manifest.extra.clean_index.group_index_sorted);
  });

  it('cuts a torn tail, keeps the cut bytes, and every query still answers as before', async () => {
    const dir = copy('clean');
    const file = path.join(dir, 'message_0');
    const log = fs.readFileSync(file);
    // Half of a record (the first record of the log) and some garbage, as a crash mid-write leaves.
    const torn = Buffer.concat([log.subarray(32, 32 + 40), Buffer.from('garbage')]);
    fs.appendFileSync(file, torn);
    const run = await ims('verify', dir);
    assert.equal(run.code, 1);
    assert.match(run.stdout, new RegExp(`message_0 offset ${LOG_SIZE}: .*torn tail`));

    const fix = await ims('repair', dir);
    assert.equal(fix.code, 0, fix.stdout + fix.stderr);
    assert.match(fix.stdout, new RegExp(`cut message_0 at offset ${LOG_SIZE} \\(${torn.length} bytes`));
    assert.equal(fs.statSync(file).size, LOG_SIZE);
    assert.deepEqual(fs.readFileSync(path.join(dir, `message_0.torn-${LOG_SIZE}`)), torn);
    assert.equal((await ims('verify', dir)).code, 0);

    const store = MessageStore.open({ root: dir });
    try {
      let checked = 0;
      for (const q of manifest.queries) {
        if (q.method !== 'SyncMessage') continue;
        const r = q.req;
        const res = store.syncMessage(BigInt(r.AppID), BigInt(r.Uid), r.LastMsgID ?? 0);
        const got = res.messages.map((m) => ({
          MsgID: m.msgId,
          DeviceID: Number(m.deviceId),
          Cmd: m.cmd,
          Raw: m.raw.toString('base64'),
        }));
        assert.deepEqual(
          { Messages: got, LastMsgID: res.lastMsgId },
          q.resp as { Messages: GoMessage[] },
          q.name,
        );
        checked++;
      }
      assert.ok(checked >= 30, `only ${checked} queries`);
    } finally {
      await store.close();
    }
  });

  it('--dry-run reports what it would do and changes nothing', async () => {
    const dir = copy('stale');
    fs.appendFileSync(path.join(dir, 'message_0'), Buffer.from('IMIM-torn'));
    const before = fingerprint(dir);
    const run = await ims('repair', dir, '--dry-run');
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.match(run.stdout, new RegExp(`would change:[\\s\\S]*cut message_0 at offset ${LOG_SIZE}`));
    assert.match(run.stdout, /update the stale index files/);
    assert.match(run.stdout, /dry run: nothing was changed/);
    assert.deepEqual(fingerprint(dir), before);
    const asJson = json(await ims('repair', dir, '--dry-run', '--json'));
    assert.equal(asJson.status, 'would-repair');
    assert.equal(asJson.dryRun, true);
    assert.deepEqual(fingerprint(dir), before);
  });

  it('does nothing on a clean folder', async () => {
    const dir = copy('clean');
    const before = fingerprint(dir);
    const run = await ims('repair', dir);
    assert.equal(run.code, 0);
    assert.match(run.stdout, /nothing to repair/);
    assert.deepEqual(fingerprint(dir), before);
  });

  it('refuses while a server holds the folder, naming its pid', async () => {
    const dir = copy('noindex');
    const server = await startServer({ dataDir: dir });
    try {
      const run = await ims('repair', dir);
      assert.notEqual(run.code, 0);
      assert.match(run.stdout, new RegExp(`refused: .*pid ${server.proc.pid}\\b.*stop that process first`));
      assert.ok(!fs.readdirSync(dir).some((f) => f.includes('.wrong-') || f.includes('.torn-')));
    } finally {
      await server.stop();
    }
  });

  it('works on a multi-block folder written by our engine (block size from index_state)', async () => {
    const dir = tempDir('ims-cli-blocks-');
    dirs.push(dir);
    const store = MessageStore.open({ root: dir, blockSize: 64 * 1024 });
    const text = Buffer.from('x'.repeat(400));
    for (let i = 0; i < 600; i++) {
      const body = Buffer.concat([Buffer.alloc(24), text]);
      store.savePeerMessage(9n, BigInt(i % 17), 1n, 4, body);
      if (i % 5 === 0) store.saveGroupMessage(9n, BigInt(i % 3), 1n, 8, body);
    }
    await store.close();
    assert.ok(fs.existsSync(path.join(dir, 'message_3')), 'expected several blocks');
    const run = await ims('verify', dir);
    assert.equal(run.code, 0, run.stdout);
    assert.match(run.stdout, /block size 65536, from index_state/);
    const usage = await ims('verify', dir, '--block-size', '131072');
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /disagrees with index_state/);
  });
});

describe('ims inspect', () => {
  const dir = copy('clean');

  it('--user prints the user queue decoded, with text bodies as text', async () => {
    const run = await ims('inspect', dir, '--user', '7:10031', '--limit', '1000');
    assert.equal(run.code, 0, run.stderr);
    const saves = manifest.saves.filter((s) => s.req.AppID === 7 && s.req.Uid === 10031);
    assert.ok(saves.length > 3);
    for (const s of saves) {
      assert.match(run.stdout, new RegExp(`^    #${s.resp} `, 'm'), `message ${s.resp} listed`);
      const raw = Buffer.from(s.req.Raw, 'base64');
      const content =
        s.req.Cmd === 4 || s.req.Cmd === 8
          ? raw.subarray(24)
          : s.req.Cmd >= 24 && s.req.Cmd <= 25
            ? raw.subarray(36)
            : raw;
      assert.ok(
        run.stdout.includes(`text: ${JSON.stringify(content.toString('utf8'))}`),
        `text of ${s.resp}`,
      );
    }
    assert.match(run.stdout, /MSG_OFFLINE_V2 .*\n  appid=7 uid=10031 msgid=\d+/);
    const asJson = json(await ims('inspect', dir, '--user', '7:10031', '--limit', '2', '--json'));
    assert.equal(asJson.entries.length, 2);
    assert.equal(asJson.more, true);
    assert.equal(asJson.entries[0].entry.cmdName, 'MSG_OFFLINE_V2');
  });

  it('--at prints one record', async () => {
    const s = manifest.saves.find((x) => x.req.Cmd === 4)!;
    const run = await ims('inspect', dir, '--at', String(s.resp));
    assert.equal(run.code, 0);
    assert.match(run.stdout, /^queue format v2 \(MSG_OFFLINE_V2 queue records\)\n/);
    assert.match(run.stdout, new RegExp(`^#${s.resp} MSG_IM \\(message_0 offset ${s.resp}, `, 'm'));
    assert.equal(run.stdout.match(/^#/gm)?.length, 1);
    const bad = await ims('inspect', dir, '--at', String(s.resp + 1));
    assert.equal(bad.code, 1);
    assert.match(bad.stdout, /no record at/);
  });

  it('--group prints a super group queue', async () => {
    const s = manifest.saves.find((x) => x.method === 'SaveGroupMessage')!;
    const run = await ims('inspect', dir, '--group', `${s.req.AppID}:${s.req.GroupID}`, '--limit', '500');
    assert.equal(run.code, 0, run.stdout);
    assert.match(run.stdout, /MSG_GROUP_IM_LIST/);
    assert.match(run.stdout, new RegExp(`^    #${s.resp} MSG_GROUP_IM`, 'm'));
  });
});

describe('usage errors exit 2', () => {
  const dir = copy('clean');
  for (const args of [
    ['verify'],
    ['verify', dir, '--bogus'],
    ['verify', dir, 'extra'],
    ['verify', path.join(dir, 'nope')],
    ['inspect', dir, '--user', '7-10031'],
    ['inspect', dir, '--user', '7:1', '--group', '7:2'],
    ['inspect', dir, '--limit', '0'],
    ['repair', dir, '--block-size', 'big'],
  ]) {
    it(args.slice(1).join(' ').replace(dir, 'DIR') || args[0], async () => {
      const run = await ims(...args);
      assert.equal(run.code, 2, run.stdout + run.stderr);
      assert.match(run.stderr, /usage:/);
    });
  }
});

describe('progress bar', () => {
  it('draws on a terminal and clears itself; stays silent otherwise', () => {
    const written: string[] = [];
    const tty = { isTTY: true, write: (s: string) => written.push(s) } as unknown as NodeJS.WriteStream;
    const bar = new ProgressBar(tty);
    bar.update(512 * 1024, 1024 * 1024, 'message_0');
    assert.match(written[0], /^\r\[#{15}-{15}\]  50% 512\.0 KiB\/1\.0 MiB message_0/);
    bar.clear();
    assert.equal(written[1], '\r\x1b[K');
    const quiet: string[] = [];
    const pipe = { isTTY: false, write: (s: string) => quiet.push(s) } as unknown as NodeJS.WriteStream;
    const silent = new ProgressBar(pipe);
    silent.update(1, 2, 'message_0');
    silent.clear();
    assert.deepEqual(quiet, []);
  });
});
