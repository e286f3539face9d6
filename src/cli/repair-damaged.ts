/**
 * `ims repair --damaged cut|fill`: the operator's explicit choice for damage that start-up and plain
 * repair never touch, a bad record with whole records after it (or a bad end of an older block).
 *
 * - cut: the block is cut at its first damaged record. Everything from there to the end of the block
 *   (whole records after the damage too) is first copied to `message_N.damaged-OFFSET`, made durable,
 *   and only then cut; the block's checksums past the cut are dropped.
 * - fill: each damaged span, from the damaged record's start to the next whole record (or to the end of
 *   an older block), is overwritten by one filler record of exactly its length (format/filler.ts), which
 *   ims's queries and tools and Go ims 2.0 all pass over. The replaced bytes are first copied to
 *   `message_N.filled-OFFSET`. The filler's checksum goes into the block's sidecar, so verify comes back
 *   clean and every record after the span stays readable. At the end of the newest block a span with
 *   no whole record after it is a torn tail: the engine cuts it as at start-up (`.torn-OFFSET`).
 *
 * The index files are then moved aside (`NAME.before-repair-TIME`) and rebuilt from the blocks by the
 * engine's own open: they may point at what was cut or filled. The caller holds the folder's lock.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BLOCK_HEADER_SIZE } from '../format/constants.js';
import { encodeFiller, fillerSizeProblem } from '../format/filler.js';
import { recordChecksum } from '../format/checksum-file.js';
import { blockFileName, copyAside } from '../storage/block-files.js';
import { BlockChecksums, readSidecar, writeSidecarFile } from '../storage/record-checksums.js';
import { FolderReader } from './folder-reader.js';
import type { VerifyOptions, VerifyReport } from './verify.js';

export type DamagedChoice = 'cut' | 'fill';

export interface DamagedSpan {
  file: string;
  /** Where the damaged record starts (the first byte that is not part of a whole record). */
  offset: number;
  /** The next whole record (fill: the span's end), or null when none follows in the block. */
  nextWholeRecord: number | null;
  reason: string;
  /** cut: the block is cut at `offset`; fill: [offset, nextWholeRecord) becomes one filler; torn-tail: the engine cuts it. */
  action: 'cut' | 'fill' | 'torn-tail';
  /** Bytes cut or overwritten. */
  bytes: number;
  /** cut: whole records after the damage that go with it. */
  recordsCut?: number;
  /** The copy of the bytes taken out (set once done). */
  keptIn?: string;
}

export interface DamagedRepair {
  status: 'planned' | 'done' | 'refused' | 'nothing-to-do';
  changes: string[];
  spans: DamagedSpan[];
  refusal?: string;
}

interface BlockPlan {
  blockNo: number;
  file: string;
  size: number;
  spans: DamagedSpan[];
}

/**
 * The damaged spans of a block: scanning from the start, each stop at bytes that are not a whole record
 * (or do not match their checksum) opens a span that ends at the next whole record; the scan goes on
 * from there. Also counts the whole records after the first span (what a cut takes with it).
 */
function scanDamage(reader: FolderReader, blockNo: number): { spans: DamagedSpan[]; recordsAfter: number } {
  const file = blockFileName(blockNo);
  const sums = reader.sumsOf(blockNo);
  const spans: DamagedSpan[] = [];
  let recordsAfter = 0;
  let from = BLOCK_HEADER_SIZE;
  const size = reader.fileSize(blockNo);
  for (;;) {
    const scan = reader.scan(
      blockNo,
      from,
      () => {
        if (spans.length > 0) recordsAfter++;
      },
      undefined,
      sums,
    );
    if (scan.problem === null) return { spans, recordsAfter };
    const next = reader.nextWholeRecord(blockNo, scan.end, sums);
    spans.push({
      file,
      offset: scan.end,
      nextWholeRecord: next,
      reason: scan.problem,
      action: 'fill',
      bytes: (next ?? size) - scan.end,
    });
    if (next === null) return { spans, recordsAfter };
    from = next;
  }
}

export function repairDamaged(
  root: string,
  options: VerifyOptions & { dryRun: boolean },
  report: VerifyReport,
  choice: DamagedChoice,
): DamagedRepair {
  const damagedBlocks = report.blocks.filter((b) => b.status === 'damaged');
  if (damagedBlocks.length === 0) return { status: 'nothing-to-do', changes: [], spans: [] };
  const reader = new FolderReader(root, options.blockSize);
  const plans: BlockPlan[] = [];
  try {
    for (const b of damagedBlocks) {
      const blockNo = Number(b.file.slice('message_'.length));
      const newest = blockNo === reader.newestBlock;
      const size = reader.fileSize(blockNo);
      const { spans, recordsAfter } = scanDamage(reader, blockNo);
      if (spans.length === 0) continue;
      if (choice === 'cut') {
        const first = spans[0];
        plans.push({
          blockNo,
          file: b.file,
          size,
          spans: [{ ...first, action: 'cut', bytes: size - first.offset, recordsCut: recordsAfter }],
        });
      } else {
        for (const span of spans) {
          if (span.nextWholeRecord === null && newest) span.action = 'torn-tail';
        }
        plans.push({ blockNo, file: b.file, size, spans });
      }
    }
  } finally {
    reader.close();
  }
  const spans = plans.flatMap((p) => p.spans);
  if (spans.length === 0) return { status: 'nothing-to-do', changes: [], spans };

  const tooBig = spans
    .filter((s) => s.action === 'fill')
    .map((s) => ({ s, problem: fillerSizeProblem(s.bytes) }))
    .filter((x) => x.problem !== null);
  if (tooBig.length > 0) {
    return {
      status: 'refused',
      changes: [],
      spans,
      refusal:
        `no single filler can replace ${tooBig.map(({ s, problem }) => `${s.file} offset ${s.offset}..${s.offset + s.bytes} (${problem})`).join('; ')}; ` +
        `nothing was changed. Use --damaged cut, or recover the folder from a slave or a backup.`,
    };
  }

  const indexFiles = [report.index.peer.file, report.index.group.file, 'index_state'];
  const changes = spans.map((s) => describe(s, false));
  const indexChange = `move ${indexFiles.join(', ')} aside (NAME.before-repair-TIME) and rebuild the index from the blocks`;
  if (options.dryRun) return { status: 'planned', changes: [...changes, indexChange], spans };

  const done: string[] = [];
  for (const plan of plans) {
    for (const span of plan.spans) {
      if (span.action === 'torn-tail') continue; // the engine's open cuts it, below
      span.keptIn = path.basename(
        span.action === 'cut' ? cutBlock(root, plan, span.offset) : fillSpan(root, plan, span),
      );
      done.push(describe(span, true));
    }
  }
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  for (const f of indexFiles) {
    if (!fs.existsSync(path.join(root, f))) continue;
    const to = `${f}.before-repair-${stamp}`;
    fs.renameSync(path.join(root, f), path.join(root, to));
    done.push(`moved ${f} aside to ${to} (it may point at what was ${choice === 'cut' ? 'cut' : 'filled'})`);
  }
  return { status: 'done', changes: done, spans };
}

function describe(s: DamagedSpan, done: boolean): string {
  const at = `${s.file} offset ${s.offset}`;
  if (s.action === 'cut') {
    const what =
      `${s.bytes} bytes from the damaged record to the end of the block (${s.reason})` +
      (s.recordsCut ? `, with the ${s.recordsCut} whole records after it` : '');
    return done
      ? `cut ${s.file} at offset ${s.offset}: ${what}; the cut bytes are kept in ${s.keptIn}`
      : `cut ${s.file} at offset ${s.offset}: ${what}; the cut bytes are kept in ${s.file}.damaged-${s.offset}`;
  }
  if (s.action === 'torn-tail') {
    return `cut the torn tail at ${at} (${s.bytes} bytes, no whole record after it: ${s.reason}), as start-up does`;
  }
  const after =
    s.nextWholeRecord === null
      ? 'the block then ends whole'
      : `the whole records from offset ${s.nextWholeRecord} on stay readable`;
  const kept = done ? s.keptIn : `${s.file}.filled-${s.offset}`;
  return (
    `${done ? 'overwrote' : 'overwrite'} ${at}..${s.offset + s.bytes} (${s.bytes} bytes: ${s.reason}) ` +
    `with one filler record that every reader skips; ${after}; the replaced bytes are kept in ${kept}`
  );
}

/** Cuts block `plan` at `offset`: the bytes from there are copied aside first. Returns the copy's path. */
function cutBlock(root: string, plan: BlockPlan, offset: number): string {
  const file = path.join(root, plan.file);
  const fd = fs.openSync(file, 'r+');
  let savedTo: string;
  try {
    savedTo = copyAside(file, fd, offset, plan.size, 'damaged');
    fs.ftruncateSync(fd, offset);
    fs.fdatasyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  const sidecar = readSidecar(root, plan.blockNo);
  if (sidecar.status === 'ok' && sidecar.sums.lastOffset >= offset) {
    sidecar.sums.truncateFrom(offset);
    writeSidecarFile(root, sidecar.sums);
  }
  return savedTo;
}

/** Overwrites one damaged span with a filler (the bytes copied aside first) and records its checksum. */
function fillSpan(root: string, plan: BlockPlan, span: DamagedSpan): string {
  const file = path.join(root, plan.file);
  const filler = encodeFiller(span.bytes);
  const fd = fs.openSync(file, 'r+');
  let savedTo: string;
  try {
    savedTo = copyAside(file, fd, span.offset, span.offset + span.bytes, 'filled');
    let done = 0;
    while (done < filler.length)
      done += fs.writeSync(fd, filler, done, filler.length - done, span.offset + done);
    fs.fdatasyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  const sidecar = readSidecar(root, plan.blockNo);
  if (sidecar.status === 'ok') {
    // Entries inside the span (of the damaged record, and of any record it swallowed) give way to the filler's.
    const old = sidecar.sums;
    const sums = new BlockChecksums(old.blockNo, old.sealedAt, Math.max(16, old.count + 1));
    const end = span.offset + span.bytes;
    let placed = false;
    for (let i = 0; i < old.count; i++) {
      const { offset, crc } = old.entry(i);
      if (!placed && offset >= span.offset) {
        sums.add(span.offset, recordChecksum(filler, 0, filler.length));
        placed = true;
      }
      if (offset < span.offset || offset >= end) sums.add(offset, crc);
    }
    if (!placed) sums.add(span.offset, recordChecksum(filler, 0, filler.length));
    writeSidecarFile(root, sums);
  }
  return savedTo;
}
