/**
 * `ims repair`: with the server stopped, cuts a torn tail of the newest block (keeping the cut bytes in
 * message_N.torn-OFFSET) and rebuilds or updates the index files. On its own it never cuts a record:
 * damage with whole records after it is left alone and reported, since cutting there would destroy good
 * messages. `--damaged cut|fill` is the operator's explicit choice for such damage (repair-damaged.ts).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DataDirLock, DataDirLockedError, describeOwner, lockHolder } from '../storage/data-dir-lock.js';
import { MessageStore } from '../storage/message-store.js';
import {
  verifyFolder,
  type BlockReport,
  type Problem,
  type VerifyOptions,
  type VerifyReport,
} from './verify.js';
import { CHECKSUM_DIR, checksumFileName, recordChecksum } from '../format/checksum-file.js';
import { BlockChecksums, writeSidecarFile } from '../storage/record-checksums.js';
import { FolderReader } from './folder-reader.js';
import { repairDamaged, type DamagedChoice, type DamagedSpan } from './repair-damaged.js';

export interface RepairOptions extends VerifyOptions {
  dryRun: boolean;
  /** Create checksum sidecars for blocks without one (Go-written), after a clean verify. */
  checksums?: boolean;
  /** Damage with whole records after it: cut the block there, or overwrite the damaged span with a filler. */
  damaged?: DamagedChoice;
  json: boolean;
  print: (line: string) => void;
}

export interface RepairResult {
  dataDir: string;
  dryRun: boolean;
  status: 'nothing-to-do' | 'repaired' | 'would-repair' | 'refused' | 'incomplete';
  /** What was (or, with --dry-run, would be) changed. */
  changes: string[];
  /** Problems repair does not fix. */
  unrepaired: Problem[];
  refusal?: string;
  /** With --damaged: each damaged span found, and what was (or would be) done with it. */
  damaged?: DamagedSpan[];
  after?: { clean: boolean; problems: Problem[] };
}

/** Returns the exit code: 0 done (or nothing to do), 1 refused or problems remain. */
export async function runRepair(root: string, options: RepairOptions): Promise<number> {
  const result = await repair(root, options);
  if (options.json) {
    options.print(JSON.stringify(result, null, 2));
  } else {
    const verb = options.dryRun ? 'would change' : 'changed';
    if (result.refusal) options.print(`ims repair: refused: ${result.refusal}`);
    if (result.changes.length > 0) {
      options.print(`${verb}:`);
      for (const c of result.changes) options.print(`  - ${c}`);
    }
    if (result.unrepaired.length > 0) {
      options.print(`not repairable by ims repair (${result.unrepaired.length}):`);
      for (const p of result.unrepaired) options.print(`  - [${p.kind}] ${p.message}`);
    }
    if (result.after) {
      options.print(
        result.after.clean
          ? 'after repair the folder verifies clean'
          : `after repair ${result.after.problems.length} problems remain`,
      );
    }
    if (result.status === 'nothing-to-do') options.print('nothing to repair: the folder verifies clean');
    if (result.status === 'would-repair') options.print('dry run: nothing was changed');
  }
  return result.status === 'nothing-to-do' || result.status === 'repaired' || result.status === 'would-repair'
    ? 0
    : 1;
}

/** A bad record with whole records after it, or a bad end of an older block: what --damaged handles. */
function isRecordDamage(p: Problem): boolean {
  return p.kind === 'damaged-record' || p.kind === 'checksum-mismatch';
}

/** Damage that stops the engine from opening the folder, or that cutting would make worse. */
function blocksRepair(p: Problem): boolean {
  return (
    p.kind === 'damaged-record' ||
    p.kind === 'checksum-mismatch' ||
    p.kind === 'block-header' ||
    p.kind === 'block-too-big' ||
    p.kind === 'block-missing'
  );
}

async function repair(root: string, options: RepairOptions): Promise<RepairResult> {
  const base = {
    dataDir: root,
    dryRun: options.dryRun,
    changes: [] as string[],
    unrepaired: [] as Problem[],
  };
  if (options.dryRun) {
    const holder = lockHolder(root);
    if (holder)
      process.stderr.write(
        `note: ${describeOwner(holder.owner)} holds this folder; a real repair would refuse\n`,
      );
    return repairLocked(root, options, base);
  }
  // Held for the whole repair, so no server can start on the folder half-way through.
  const lock = new DataDirLock(root, 'ims repair');
  try {
    lock.acquire();
  } catch (err) {
    if (!(err instanceof DataDirLockedError)) throw err;
    return { ...base, status: 'refused', refusal: `${err.message}, then run ims repair again` };
  }
  try {
    return await repairLocked(root, options, base);
  } finally {
    lock.release();
  }
}

async function repairLocked(
  root: string,
  options: RepairOptions,
  base: Pick<RepairResult, 'dataDir' | 'dryRun' | 'changes' | 'unrepaired'>,
): Promise<RepairResult> {
  const report = verifyFolder(root, options);
  const unrepaired = report.problems.filter((p) => !p.repairable);
  // With --damaged the operator has chosen what happens to damaged records: they no longer block.
  const blocking = unrepaired.filter((p) => blocksRepair(p) && !(options.damaged && isRecordDamage(p)));
  if (blocking.length > 0) {
    const onlyRecords = blocking.every(isRecordDamage);
    return {
      ...base,
      unrepaired,
      status: 'refused',
      refusal:
        `the log is damaged where no cut can help: ${blocking.map((p) => p.message).join('; ')}. ` +
        `ims repair only cuts a torn tail (the end of the newest block with no whole record after it); ` +
        `here that would destroy good records, so nothing was changed. Recover the folder from a slave ` +
        `(its files are byte-identical to the master's) or from a backup` +
        (onlyRecords
          ? `, or choose explicitly: --damaged fill (overwrite each damaged record with a filler every ` +
            `reader skips; the records after it stay) or --damaged cut (cut the block at the damaged ` +
            `record; the cut bytes are kept aside).`
          : '.'),
    };
  }
  if (options.checksums) return createChecksums(root, options, report, base, unrepaired);
  // Without damaged records --damaged changes nothing: the usual repair below.
  const r = options.damaged ? repairDamaged(root, options, report, options.damaged) : null;
  if (r && r.status !== 'nothing-to-do') {
    if (r.status !== 'done') {
      const status = r.status === 'planned' ? 'would-repair' : r.status;
      return { ...base, unrepaired, changes: r.changes, damaged: r.spans, status, refusal: r.refusal };
    }
    const changes = [...r.changes];
    await reopenAndSaveIndex(root, options, report, changes);
    const rest = unrepaired.filter((p) => !isRecordDamage(p));
    return verifiedAfter(root, options, { ...base, changes, unrepaired: rest, damaged: r.spans });
  }
  const planned = plan(report);
  if (planned.changes.length === 0) {
    return { ...base, unrepaired, status: unrepaired.length > 0 ? 'incomplete' : 'nothing-to-do' };
  }
  if (options.dryRun) return { ...base, unrepaired, changes: planned.changes, status: 'would-repair' };

  const changes: string[] = [];
  // An index that disagrees with the log cannot be repaired from its position: move it aside (kept for
  // the record) so the engine rebuilds both files from the blocks.
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  for (const { file, why } of planned.setAside) {
    const to = `${file}.wrong-${stamp}`;
    fs.renameSync(path.join(root, file), path.join(root, to));
    changes.push(`moved ${file} aside to ${to} (${why})`);
  }
  await reopenAndSaveIndex(root, options, report, changes);
  return verifiedAfter(root, options, { ...base, changes, unrepaired });
}

/**
 * The engine's own open cuts a torn tail (saving the bytes) and repairs or rebuilds the index (rebuilt
 * when the index files were moved aside); the index files are then saved. Appends what it did.
 */
async function reopenAndSaveIndex(
  root: string,
  options: RepairOptions,
  report: VerifyReport,
  changes: string[],
): Promise<void> {
  const store = MessageStore.open({ root, blockSize: options.blockSize, lock: false });
  try {
    const r = store.openReport!;
    // The engine finds the format as verify did; never save one format's index files into the other's folder.
    if (r.queueFormat !== report.queueFormat.format) {
      throw new Error(
        `the engine reads ${root} as queue_format ${r.queueFormat} but verify read it as ${report.queueFormat.format}; nothing was saved`,
      );
    }
    if (r.tornTail) {
      changes.push(
        `cut ${path.basename(r.tornTail.file)} at offset ${r.tornTail.offset} (${r.tornTail.bytes} bytes: ${r.tornTail.reason}); ` +
          `the cut bytes are kept in ${path.basename(r.tornTail.savedTo ?? '')}`,
      );
    }
    const how =
      r.index === 'rebuilt'
        ? `rebuilt from all blocks${r.reason ? ` (${r.reason})` : ''}`
        : r.index === 'repaired'
          ? `updated from log position ${r.scannedFrom} (${r.recordsScanned} records replayed)`
          : 'loaded unchanged';
    await store.saveIndex();
    changes.push(
      `index ${how}; wrote ${report.index.peer.file} (${r.peerEntries} entries), ${report.index.group.file} (${r.groupEntries} entries) and index_state`,
    );
  } finally {
    await store.close({ saveIndex: false });
  }
}

/** The result of a repair that changed the folder: verified again, repaired only if now clean. */
function verifiedAfter(
  root: string,
  options: RepairOptions,
  result: Omit<RepairResult, 'status' | 'after'>,
): RepairResult {
  const after = verifyFolder(root, options);
  return {
    ...result,
    status: after.clean ? 'repaired' : 'incomplete',
    after: { clean: after.clean, problems: after.problems },
  };
}

function plan(report: VerifyReport): { changes: string[]; setAside: { file: string; why: string }[] } {
  const changes: string[] = [];
  const setAside: { file: string; why: string }[] = [];
  for (const b of report.blocks) {
    if (b.status === 'torn-tail' && b.bad) {
      changes.push(
        b.size < 32
          ? `rewrite the incomplete header of ${b.file} (${b.size} bytes, no records)`
          : `cut ${b.file} at offset ${b.bad.offset} (${b.size - b.bad.offset} bytes: ${b.bad.reason}); ` +
              `the cut bytes are kept in ${b.file}.torn-${b.bad.offset}`,
      );
    }
  }
  const idx = report.index;
  // Files that do not describe this log are moved aside (kept), so the engine cannot start a repair from them.
  for (const r of [idx.peer, idx.group]) {
    if (r.status === 'wrong' || r.status === 'past-log')
      setAside.push({
        file: r.file,
        why:
          r.status === 'wrong' ? 'its entries disagree with the blocks' : 'it points past the end of the log',
      });
  }
  if (idx.state.status === 'past-log' || idx.state.status === 'bad') {
    setAside.push({
      file: 'index_state',
      why: idx.state.status === 'bad' ? 'it is unreadable' : 'it points past the end of the log',
    });
  }
  const statuses = [idx.peer.status, idx.group.status];
  const rebuild = statuses.some((s) => s !== 'ok' && s !== 'stale') || setAside.length > 0;
  for (const f of setAside) changes.push(`move ${f.file} aside to ${f.file}.wrong-TIME (${f.why})`);
  if (rebuild) {
    changes.push(
      `rebuild ${idx.peer.file} and ${idx.group.file} from the blocks (${[idx.peer, idx.group].map((r) => `${r.file}: ${r.status}`).join(', ')})`,
    );
  } else if (statuses.includes('stale')) {
    changes.push(
      `update the stale index files from the position they reflect (${[idx.peer, idx.group].map((r) => `${r.file}: ${r.status}`).join(', ')})`,
    );
  } else if (changes.length > 0) {
    changes.push(`save ${idx.peer.file}, ${idx.group.file} and index_state for the cut log`);
  }
  return { changes, setAside };
}

/**
 * `repair --checksums`: gives every block that has no usable sidecar (Go-written, or unreadable) one,
 * computed from its records. Only after a clean verify (checksum-file problems aside): a checksum of a
 * damaged record would vouch for the damage. A sealed block's sealing time is taken from its mtime (the
 * time of its last write, which is what retention needs).
 */
async function createChecksums(
  root: string,
  options: RepairOptions,
  report: VerifyReport,
  base: Pick<RepairResult, 'dataDir' | 'dryRun' | 'changes' | 'unrepaired'>,
  unrepaired: Problem[],
): Promise<RepairResult> {
  const others = report.problems.filter((p) => p.kind !== 'checksum-file');
  if (others.length > 0) {
    return {
      ...base,
      unrepaired,
      status: 'refused',
      refusal:
        `checksums are created only for a folder that verifies clean; first fix: ` +
        others.map((p) => p.message).join('; '),
    };
  }
  const targets = report.blocks.filter((b) => b.checksums !== 'ok');
  if (targets.length === 0) return { ...base, unrepaired, status: 'nothing-to-do' };
  const describe = (b: BlockReport) =>
    `write ${CHECKSUM_DIR}/${checksumFileName(Number(b.file.slice(8)))} (${b.records} records of ${b.file})`;
  if (options.dryRun) return { ...base, unrepaired, changes: targets.map(describe), status: 'would-repair' };
  const reader = new FolderReader(root, options.blockSize);
  const changes: string[] = [];
  try {
    for (const b of targets) {
      const blockNo = Number(b.file.slice('message_'.length));
      const newest = blockNo === reader.newestBlock;
      const sealedAt = newest ? 0 : Math.floor(fs.statSync(path.join(root, b.file)).mtimeMs);
      const sums = new BlockChecksums(blockNo, sealedAt, Math.max(16, b.records));
      reader.scan(blockNo, 32, (id, _msg, size, bytes) => {
        sums.add(reader.offsetOf(id), recordChecksum(bytes, 0, size));
      });
      writeSidecarFile(root, sums);
      changes.push(describe(b));
    }
  } finally {
    reader.close();
  }
  return verifiedAfter(root, options, { ...base, changes, unrepaired });
}
