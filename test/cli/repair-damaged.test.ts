import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { crc32 } from 'node:zlib';
import { verifyFolder } from '../../src/cli/verify.js';
import { BLOCK_HEADER_SIZE, Cmd } from '../../src/format/constants.js';
import { CHECKSUM_DIR } from '../../src/format/checksum-file.js';
import {
  FILLER_CMD,
  FILLER_SEQ,
  encodeFiller,
  fillerSizeProblem,
  isFiller,
} from '../../src/format/filler.js';
import { decodeRecord, encodeRecord, recordSize } from '../../src/format/record.js';
import { readSidecar } from '../../src/storage/record-checksums.js';
import { MessageStore } from '../../src/storage/index.js';
import { removeDir, tempDir } from '../support/fixtures.js';
import { clientFor } from '../support/rpc-client.js';
import { startServer } from '../support/server-process.js';
import { ims } from '../support/cli-runner.js';
import { APP, GROUPS, USERS, imBody, runWorkload } from '../support/workload.js';

const BLOCK = 64 * 1024;
const verifyOpts = { blockSize: BLOCK, blockSizeSource: 'test' };

const dirs: string[] = [];
after(() => dirs.forEach(removeDir));

/** sha256 of every file of a folder and of its checksums/ subfolder, by name. */
function fingerprint(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const sub of ['', CHECKSUM_DIR]) {
    const d = path.join(dir, sub);
    if (!fs.existsSync(d)) continue;
    for (const f of fs.readdirSync(d).sort()) {
      const p = path.join(d, f);
      if (fs.statSync(p).isFile())
        out[path.join(sub, f)] = crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex');
    }
  }
  return out;
}

function blockFile(root: string, id: number): string {
  return path.join(root, `message_${Math.floor(id / BLOCK)}`);
}

function flipByte(file: string, offset: number, mask = 0x20): void {
  const data = fs.readFileSync(file);
  data[offset] ^= mask;
  fs.writeFileSync(file, data);
}

/** A folder of several 64 KiB blocks written by the engine, with a few records to aim at. */
async function folder(seed: number): Promise<{
  root: string;
  peerVictim: { id: number; uid: bigint };
  groupVictim: { id: number; gid: bigint };
  lastBlock: number;
}> {
  const root = tempDir('ims-damaged-');
  dirs.push(root);
  const store = MessageStore.open({ root, blockSize: BLOCK });
  runWorkload(store, 700, seed);
  // Victims in the write block, each followed by many whole records.
  const peerVictim = {
    id: store.savePeerMessage(APP, USERS[3], 11n, Cmd.IM, imBody(1n, USERS[3], 'victim')).msgId,
    uid: USERS[3],
  };
  runWorkload(store, 40, seed + 1);
  const gid = GROUPS[1];
  const groupVictim = {
    id: store.saveGroupMessage(APP, gid, 13n, Cmd.GROUP_IM, imBody(1n, gid, 'group victim', 1_600_000_500))
      .msgId,
    gid,
  };
  runWorkload(store, 40, seed + 2);
  const lastBlock = Math.floor((store.nextId - 1) / BLOCK);
  await store.close();
  assert.equal(Math.floor(peerVictim.id / BLOCK), lastBlock, 'the victims are in the write block');
  assert.equal(Math.floor(groupVictim.id / BLOCK), lastBlock);
  assert.ok(lastBlock >= 2, `${lastBlock + 1} blocks`);
  return { root, peerVictim, groupVictim, lastBlock };
}

function recordAt(root: string, id: number): { bytes: Buffer; size: number } {
  const data = fs.readFileSync(blockFile(root, id));
  const off = id % BLOCK;
  const d = decodeRecord(data, off);
  assert.equal(d.kind, 'ok');
  if (d.kind !== 'ok') throw new Error('unreachable');
  return { bytes: Buffer.from(data.subarray(off, off + d.size)), size: d.size };
}

type Answers = Map<string, { msgId: number; cmd: number; raw: string }[]>;

/** Every user's and group's messages from 0, through the engine. */
async function engineAnswers(root: string): Promise<Answers> {
  const store = MessageStore.open({ root, blockSize: BLOCK, lock: false });
  try {
    const out: Answers = new Map();
    const show = (m: { msgId: number; cmd: number; raw: Buffer }[]) =>
      m.map((x) => ({ msgId: x.msgId, cmd: x.cmd, raw: x.raw.toString('base64') }));
    for (const uid of USERS) out.set(`user ${uid}`, show(store.syncMessage(APP, uid, 0).messages));
    for (const gid of GROUPS) out.set(`group ${gid}`, show(store.syncGroupMessage(APP, gid, 0, 0).messages));
    return out;
  } finally {
    await store.close({ saveIndex: false });
  }
}

/** The same through a real server started on the folder. */
async function serverAnswers(root: string): Promise<Answers> {
  const server = await startServer({ dataDir: root, config: { block_size: BLOCK } });
  const client = clientFor(server);
  try {
    const out: Answers = new Map();
    const show = (m: { msgId: number; cmd: number; raw: Buffer }[]) =>
      m.map((x) => ({ msgId: x.msgId, cmd: x.cmd, raw: x.raw.toString('base64') }));
    for (const uid of USERS) {
      const r = await client.syncMessage({ appId: APP, uid, deviceId: 1n, lastMsgId: 0 });
      out.set(`user ${uid}`, show(r.messages));
      const latest = await client.getLatestMessage({ appId: APP, uid, limit: 500 });
      assert.ok(!latest.messages.some((m) => m.cmd === FILLER_CMD), 'GetLatestMessage returned a filler');
    }
    for (const gid of GROUPS) {
      const r = await client.syncGroupMessage({
        appId: APP,
        uid: USERS[0],
        deviceId: 1n,
        groupId: gid,
        lastMsgId: 0,
        timestamp: 0,
      });
      out.set(`group ${gid}`, show(r.messages));
    }
    return out;
  } finally {
    await client.close();
    await server.stop();
  }
}

describe('filler records', () => {
  it('are one record of exactly the span, cmd 36 with the FILL seq, from the smallest to the largest record Go reads', () => {
    for (const size of [20, 21, 76, 300, 20 + 32767]) {
      const f = encodeFiller(size);
      assert.equal(f.length, size);
      const d = decodeRecord(f, 0);
      assert.equal(d.kind, 'ok');
      if (d.kind !== 'ok') continue;
      assert.equal(d.size, size);
      assert.equal(d.message.cmd, FILLER_CMD);
      assert.equal(d.message.seq, FILLER_SEQ);
      assert.ok(isFiller(d.message));
    }
    assert.match(fillerSizeProblem(19)!, /fewer than the smallest record/);
    assert.match(fillerSizeProblem(20 + 32768)!, /more than one record is damaged/);
    assert.equal(isFiller({ cmd: FILLER_CMD, seq: 0 }), false, 'a saved notification (seq 0) is no filler');
  });

  it('is never what a save writes: a notification (cmd 36) is saved with seq 0 and read as a message', async () => {
    const root = tempDir('ims-filler-save-');
    dirs.push(root);
    const store = MessageStore.open({ root, blockSize: BLOCK });
    try {
      const look = encodeFiller(60);
      const id = store.savePeerMessage(APP, 1n, 1n, FILLER_CMD, look.subarray(16, 56)).msgId;
      const rec = store.readRecord(id);
      assert.equal(rec.cmd, FILLER_CMD);
      assert.equal(rec.seq, 0);
      assert.equal(isFiller(rec), false);
    } finally {
      await store.close();
    }
  });
});

describe('ims repair --damaged fill', () => {
  it('overwrites damaged records in the write block with fillers; verify is clean and a real server answers every other message', async () => {
    const { root, peerVictim, groupVictim } = await folder(21);
    const before = await engineAnswers(root);
    const peerRec = recordAt(root, peerVictim.id);
    const groupRec = recordAt(root, groupVictim.id);
    // A bad byte in a body (only the checksum can tell) and a bad length (the framing breaks).
    flipByte(blockFile(root, peerVictim.id), (peerVictim.id % BLOCK) + 16 + 30);
    flipByte(blockFile(root, groupVictim.id), (groupVictim.id % BLOCK) + 4, 0x40);
    const damagedPeer = recordAt(root, peerVictim.id).bytes;
    const damagedGroup = fs
      .readFileSync(blockFile(root, groupVictim.id))
      .subarray(groupVictim.id % BLOCK, (groupVictim.id % BLOCK) + groupRec.size);

    const refused = await ims('repair', root);
    assert.equal(refused.code, 1);
    assert.match(refused.stdout, /would destroy good records, so nothing was changed/);
    assert.match(refused.stdout, /--damaged fill .*--damaged cut/);

    const untouched = fingerprint(root);
    const dry = await ims('repair', root, '--damaged', 'fill', '--dry-run', '--json');
    assert.equal(dry.code, 0, dry.stdout + dry.stderr);
    const planned = JSON.parse(dry.stdout);
    assert.equal(planned.status, 'would-repair');
    assert.deepEqual(fingerprint(root), untouched, 'a dry run changes nothing');
    // The write block is checked first to last: the peer victim comes first.
    assert.deepEqual(
      planned.damaged.map((s: any) => [s.offset, s.bytes, s.action]),
      [
        [peerVictim.id % BLOCK, peerRec.size, 'fill'],
        [groupVictim.id % BLOCK, groupRec.size, 'fill'],
      ],
    );

    const blockBefore = fs.readFileSync(blockFile(root, peerVictim.id));
    const run = await ims('repair', root, '--damaged', 'fill');
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.match(run.stdout, /overwrote message_\d+ offset \d+\.\.\d+ .* with one filler record/);
    assert.match(run.stdout, /after repair the folder verifies clean/);

    // Exactly the two spans changed; each is one filler of its length; the replaced bytes are kept.
    const blockAfter = fs.readFileSync(blockFile(root, peerVictim.id));
    assert.equal(blockAfter.length, blockBefore.length);
    const spans = [
      [peerVictim.id % BLOCK, peerRec.size, damagedPeer],
      [groupVictim.id % BLOCK, groupRec.size, damagedGroup],
    ] as const;
    const expected = Buffer.from(blockBefore);
    for (const [off, size, damaged] of spans) {
      encodeFiller(size).copy(expected, off);
      const kept = path.join(root, `${path.basename(blockFile(root, peerVictim.id))}.filled-${off}`);
      assert.deepEqual(fs.readFileSync(kept), Buffer.from(damaged), `${kept} holds the replaced bytes`);
    }
    assert.ok(blockAfter.equals(expected), 'only the damaged spans changed, each into a filler');

    // The fillers' checksums are in the sidecar: verify is clean and counts them.
    const blockNo = Math.floor(peerVictim.id / BLOCK);
    const sums = readSidecar(root, blockNo);
    assert.equal(sums.status, 'ok');
    if (sums.status === 'ok')
      for (const [off, size] of spans) assert.equal(sums.sums.find(off), crc32(encodeFiller(size)));
    const report = verifyFolder(root, verifyOpts);
    assert.equal(report.clean, true, JSON.stringify(report.problems));
    assert.equal(report.fillers, 2);
    assert.equal(report.chains.messagesFilled, 2);

    // Every other message answers as before, through the engine and through a real server.
    const want: Answers = new Map(
      [...before].map(([k, v]) => [
        k,
        v.filter((m) => m.msgId !== peerVictim.id && m.msgId !== groupVictim.id),
      ]),
    );
    assert.ok(before.get(`user ${peerVictim.uid}`)!.some((m) => m.msgId === peerVictim.id));
    assert.ok(before.get(`group ${groupVictim.gid}`)!.some((m) => m.msgId === groupVictim.id));
    assert.deepEqual(await engineAnswers(root), want);
    assert.deepEqual(await serverAnswers(root), want);

    // inspect shows the filler as such.
    const at = await ims('inspect', root, '--at', String(peerVictim.id));
    assert.equal(at.code, 0, at.stdout + at.stderr);
    assert.match(at.stdout, /FILLER \(ims repair --damaged fill/);
  });

  it('fills a damaged queue entry in a sealed block: its user’s chain ends there, everything else answers as before', async () => {
    const { root } = await folder(22);
    const store = MessageStore.open({ root, blockSize: BLOCK, lock: false });
    // A peer IM in block 1 and the queue entry right after it.
    let entryId = 0;
    let owner = 0n;
    let msgId = 0;
    for (let id = BLOCK + BLOCK_HEADER_SIZE; id < 2 * BLOCK && entryId === 0;) {
      const rec = store.readRecord(id);
      const next = id + recordSize(rec.body.length);
      if (rec.cmd === Cmd.IM && next < 2 * BLOCK - 2000) {
        const e = store.readRecord(next);
        if (e.cmd === Cmd.OFFLINE_V2 && e.body.readBigInt64BE(16) === BigInt(id)) {
          entryId = next;
          owner = e.body.readBigInt64BE(8);
          msgId = id;
        }
      }
      id = next;
    }
    await store.close({ saveIndex: false });
    assert.ok(entryId > 0, 'found a queue entry in block 1');
    const before = await engineAnswers(root);
    const ownerBefore = before.get(`user ${owner}`)!;
    const at = ownerBefore.findIndex((m) => m.msgId === msgId);
    assert.ok(at > 0 && at < ownerBefore.length - 1, 'the entry has newer and older ones');
    const entry = recordAt(root, entryId);
    flipByte(blockFile(root, entryId), (entryId % BLOCK) + 4, 0x40);

    const run = await ims('repair', root, '--damaged', 'fill', '--json');
    assert.equal(run.code, 0, run.stdout + run.stderr);
    const result = JSON.parse(run.stdout);
    assert.equal(result.status, 'repaired');
    assert.deepEqual(
      result.damaged.map((s: any) => [s.file, s.offset, s.bytes, s.nextWholeRecord]),
      [['message_1', entryId % BLOCK, entry.size, (entryId % BLOCK) + entry.size]],
    );
    assert.equal(result.after.clean, true, JSON.stringify(result.after.problems));
    const report = verifyFolder(root, verifyOpts);
    assert.equal(report.chains.linksIntoFillers > 0, true);

    const want: Answers = new Map(before);
    want.set(`user ${owner}`, ownerBefore.slice(0, at));
    assert.deepEqual(await engineAnswers(root), want);
    assert.deepEqual(await serverAnswers(root), want);

    const chain = await ims('inspect', root, '--user', `${APP}:${owner}`, '--limit', '1000');
    assert.equal(chain.code, 0, chain.stdout + chain.stderr);
    assert.match(chain.stdout, new RegExp(`the chain ends at ${entryId}: a filler`));
  });
});

describe('ims repair --damaged: where a damaged span ends', () => {
  it('at the next record the sidecar lists, not at a record-looking MAGIC inside the damaged one', async () => {
    const root = tempDir('ims-damaged-fake-');
    dirs.push(root);
    const store = MessageStore.open({ root, blockSize: BLOCK });
    runWorkload(store, 30, 31);
    // A body that holds the bytes of a whole record: a scan that only looked for MAGIC would stop there.
    const fake = encodeRecord({ cmd: Cmd.IM, seq: 0, version: 1, flag: 0, body: Buffer.from('fake') });
    const body = Buffer.concat([Buffer.from('before '), fake, Buffer.from(' after')]);
    const victim = store.savePeerMessage(APP, USERS[2], 0n, Cmd.SYSTEM, body).msgId;
    runWorkload(store, 30, 32);
    await store.close();
    const size = recordAt(root, victim).size;
    flipByte(blockFile(root, victim), (victim % BLOCK) + 4, 0x40);
    const dry = JSON.parse((await ims('repair', root, '--damaged', 'fill', '--dry-run', '--json')).stdout);
    assert.deepEqual(
      dry.damaged.map((s: any) => [s.offset, s.bytes, s.nextWholeRecord]),
      [[victim % BLOCK, size, (victim % BLOCK) + size]],
    );
  });
});

describe('ims repair --damaged cut', () => {
  it('cuts the write block at the damaged record; the bytes kept aside equal the bytes removed', async () => {
    const { root, peerVictim, lastBlock } = await folder(23);
    const file = blockFile(root, peerVictim.id);
    const offset = peerVictim.id % BLOCK;
    flipByte(file, offset + 16 + 30);
    const whole = fs.readFileSync(file);
    const others = fingerprint(root);

    const run = await ims('repair', root, '--damaged', 'cut');
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.match(
      run.stdout,
      new RegExp(
        `cut message_${lastBlock} at offset ${offset}: ${whole.length - offset} bytes .*whole records after it; the cut bytes are kept in message_${lastBlock}\\.damaged-${offset}`,
      ),
    );
    assert.match(run.stdout, /after repair the folder verifies clean/);
    assert.deepEqual(fs.readFileSync(file), whole.subarray(0, offset));
    assert.deepEqual(fs.readFileSync(`${file}.damaged-${offset}`), whole.subarray(offset));
    // Older blocks are untouched.
    const now = fingerprint(root);
    for (let b = 0; b < lastBlock; b++) assert.equal(now[`message_${b}`], others[`message_${b}`]);
    const sums = readSidecar(root, lastBlock);
    assert.ok(sums.status === 'ok' && sums.sums.lastOffset < offset, 'no checksum past the cut');

    // The server starts on the cut folder and answers from what is left.
    const served = await serverAnswers(root);
    assert.deepEqual(served, await engineAnswers(root));
    for (const list of served.values()) assert.ok(list.every((m) => m.msgId < peerVictim.id));
  });

  it('cuts a sealed block at the damaged record; later blocks stay; the kept bytes equal the removed ones', async () => {
    const { root, lastBlock } = await folder(24);
    const file = path.join(root, 'message_1');
    const whole = fs.readFileSync(file);
    // A record in the middle of block 1.
    let offset = BLOCK_HEADER_SIZE;
    while (offset < whole.length / 2) {
      const d = decodeRecord(whole, offset);
      assert.equal(d.kind, 'ok');
      if (d.kind !== 'ok') break;
      offset += d.size;
    }
    flipByte(file, offset + 14);
    const damaged = fs.readFileSync(file);
    const others = fingerprint(root);

    const run = await ims('repair', root, '--damaged', 'cut', '--json');
    assert.ok(run.code === 0 || run.code === 1, run.stdout + run.stderr);
    const result = JSON.parse(run.stdout);
    assert.ok(['repaired', 'incomplete'].includes(result.status), result.status);
    assert.deepEqual(fs.readFileSync(file), damaged.subarray(0, offset));
    assert.deepEqual(fs.readFileSync(`${file}.damaged-${offset}`), damaged.subarray(offset));
    const now = fingerprint(root);
    for (let b = 2; b <= lastBlock; b++) assert.equal(now[`message_${b}`], others[`message_${b}`]);
    // No damage is left; what may remain are links from later blocks into the part cut away.
    for (const p of result.after.problems)
      assert.ok(['chain-pointer', 'message-pointer'].includes(p.kind), JSON.stringify(p));
    const report = verifyFolder(root, verifyOpts);
    assert.ok(
      report.blocks.every((b) => b.status === 'ok'),
      JSON.stringify(report.blocks),
    );
  });
});

describe('ims repair --damaged: refusals', () => {
  it('refuses while a server holds the folder, and changes nothing', async () => {
    const { root, peerVictim } = await folder(25);
    flipByte(blockFile(root, peerVictim.id), (peerVictim.id % BLOCK) + 16 + 30);
    // The index files are current, so the server starts; only a read of the victim fails.
    const server = await startServer({ dataDir: root, config: { block_size: BLOCK } });
    try {
      const before = fingerprint(root);
      for (const choice of ['fill', 'cut']) {
        const run = await ims('repair', root, '--damaged', choice);
        assert.equal(run.code, 1, run.stdout + run.stderr);
        assert.match(run.stdout, new RegExp(`refused: .*pid ${server.proc.pid}\\b`));
        const now = fingerprint(root);
        delete now['ims.lock'];
        const was = { ...before };
        delete was['ims.lock'];
        assert.deepEqual(now, was, `${choice} changed the folder`);
      }
    } finally {
      await server.stop();
    }
  });

  it('usage: --damaged takes cut or fill, and not with --checksums', async () => {
    const { root } = await folder(26);
    const bad = await ims('repair', root, '--damaged', 'skip');
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--damaged must be cut or fill/);
    const both = await ims('repair', root, '--damaged', 'fill', '--checksums');
    assert.equal(both.code, 2);
  });

  it('inspect reports a checksum mismatch instead of the record', async () => {
    const { root, peerVictim } = await folder(27);
    flipByte(blockFile(root, peerVictim.id), (peerVictim.id % BLOCK) + 16 + 30);
    const run = await ims('inspect', root, '--at', String(peerVictim.id));
    assert.equal(run.code, 1, run.stdout + run.stderr);
    assert.match(run.stdout, new RegExp(`checksum mismatch in message id ${peerVictim.id}`));
    assert.doesNotMatch(run.stdout, /victim/);
    const blockStart = Math.floor(peerVictim.id / BLOCK) * BLOCK + BLOCK_HEADER_SIZE;
    const log = await ims('inspect', root, '--from', String(blockStart), '--limit', '5000');
    assert.match(
      log.stdout,
      new RegExp(`stopped: message_\\d+ offset ${peerVictim.id % BLOCK}: checksum mismatch`),
    );
  });
});
