/**
 * `ims verify`: a read-only walk of a data folder. It checks every block's header and record framing,
 * rebuilds the peer and group indexes from the records and compares them with the index files, and
 * checks that every queue entry points backwards, at an entry of its own queue, and at a message.
 *
 * Chains are checked during the one sequential pass: an entry's prev pointers must equal the queue's
 * head at the moment the entry was written (which the replay knows), and only pointers that differ
 * are read from disk. That covers every entry any chain can reach, in O(records), without a random
 * read per link.
 *
 * The folder's queue format (found as the engine finds it) decides which index files are compared and
 * by which replay rule. In a v4 folder every entry also carries its sequence number (one more than the
 * entry it follows) and a link to the previous batch mark (the latest entry whose seq is a multiple of
 * 1000); a folder switched from v2 keeps v2 entries below its switch point, counted into each sequence.
 */
import { BLOCK_HEADER_SIZE, Cmd, QUEUE_BATCH_SIZE, cmdName } from '../format/constants.js';
import { V4_QUEUE_CMDS, decodeQueueEntry, isQueueCmd, type QueueEntry } from '../format/queue-entries.js';
import type { RawMessage } from '../format/record.js';
import { blockFileName } from '../storage/block-files.js';
import type { IdTable } from '../storage/id-table.js';
import { FolderReader } from './folder-reader.js';
import { isFiller } from '../format/filler.js';
import { CHECKSUM_DIR, checksumFileName } from '../format/checksum-file.js';
import { readSidecar } from '../storage/record-checksums.js';
import {
  INDEX_VALUE_NAMES,
  QUEUE_CMDS_OF,
  RebuiltIndex,
  folderLayout,
  keyOf,
  readIndexFile,
  readStateFile,
  slotValue,
  goValueName,
  wordsOf,
  type FolderLayout,
  type IndexFileRead,
  type IndexKind,
  type ToolQueueFormat,
} from './index-model.js';

export type ProblemKind =
  | 'block-missing'
  | 'block-header'
  | 'block-too-big'
  | 'torn-tail'
  | 'damaged-record'
  | 'checksum-mismatch'
  | 'checksum-file'
  | 'index-missing'
  | 'index-unreadable'
  | 'index-truncated'
  | 'index-past-log'
  | 'index-wrong'
  | 'index-stale'
  | 'state-bad'
  | 'chain-pointer'
  | 'message-pointer'
  | 'malformed-entry'
  | 'foreign-entry'
  | 'queue-seq';

export interface Problem {
  kind: ProblemKind;
  message: string;
  file?: string;
  offset?: number;
  /** `ims repair` can fix it without losing a record. */
  repairable: boolean;
}

export interface BlockReport {
  file: string;
  size: number;
  records: number;
  /** Offset after the last whole record. */
  end: number;
  status: 'ok' | 'torn-tail' | 'damaged' | 'bad-header' | 'missing' | 'too-big';
  /** Its checksum sidecar: kept by ims ('ok'), absent (a block written by Go: 'none') or unusable. */
  checksums?: 'ok' | 'none' | 'bad';
  /** The first bad record: where and why. */
  bad?: { offset: number; reason: string; nextWholeRecord: number | null };
}

export type IndexStatus = 'ok' | 'missing' | 'unreadable' | 'truncated' | 'past-log' | 'wrong' | 'stale';

export interface IndexReport {
  file: string;
  status: IndexStatus;
  entries: number;
  rebuiltEntries: number;
  /** The file reflects the records with ids below this (from index_state, or its newest entry for Go files). */
  reflectsBefore: number | null;
  wrongEntries: number;
  staleEntries: number;
  pastLogEntries: number;
  duplicateKeys: number;
  examples: string[];
  message: string;
}

export interface ChainReport {
  peerEntries: number;
  groupEntries: number;
  users: number;
  groups: number;
  /** Links equal to the queue's head when the entry was written (the normal case). */
  linksToPreviousHead: number;
  /** Links that point backwards at an older entry of the same queue, skipping some (Go's stale-index restart). */
  linksSkippingEntries: number;
  /** Links that start a queue afresh (0) although the queue had entries. */
  linksRestarting: number;
  /** Links into blocks deleted by retention (where chains end). */
  linksIntoDeletedBlocks: number;
  /** Links to a filler that `ims repair --damaged fill` wrote over a damaged entry (chains end there). */
  linksIntoFillers: number;
  /** Entries whose message `ims repair --damaged fill` replaced by a filler (queries skip it). */
  messagesFilled: number;
  badLinks: number;
  badMessagePointers: number;
  malformedEntries: number;
  /** Queue records of the other format than the folder holds at their position. */
  foreignEntries: number;
  /** v4 entries whose sequence number was checked (not after retention: counts start where the log does). */
  seqsChecked: number;
  /** v4 entries whose sequence number is not one more than the entry they follow. */
  badSeqs: number;
  /** v4 entries that are batch marks (seq a multiple of 1000). */
  batchMarks: number;
}

export interface VerifyReport {
  dataDir: string;
  /** The folder's queue format, what showed it, and its switch point if it was upgraded. */
  queueFormat: ToolQueueFormat;
  blockSize: number;
  blockSizeSource: string;
  blocks: BlockReport[];
  /** Id after the last whole record of the newest block (the log end after a torn tail is cut). */
  logEnd: number;
  /** Id of the first record the log can hold: above 32 when retention deleted the oldest blocks. */
  firstId: number;
  records: number;
  recordsByCmd: Record<string, number>;
  /** Filler records: what `ims repair --damaged fill` wrote over damaged records. */
  fillers: number;
  /** False when damage stopped the walk of a block early: then index and chain results are partial. */
  scanComplete: boolean;
  index: {
    peer: IndexReport;
    group: IndexReport;
    state: { status: string; logEnd?: number; message: string };
  };
  chains: ChainReport;
  checksums: {
    /** Records whose checksum was compared (and matched, up to any damage). */
    checked: number;
    /** Records without a checksum (blocks written by Go, or a sidecar that is missing). */
    unchecked: number;
    blocksWithout: string[];
    message: string;
  };
  problems: Problem[];
  /** A server held the folder's lock: what it leaves for later (index saves, a record being written). */
  live: boolean;
  /** Findings that are not problems (on a live folder: index files not saved yet, a record in progress). */
  notes: string[];
  clean: boolean;
}

export interface VerifyOptions {
  blockSize: number;
  blockSizeSource: string;
  onProgress?: (done: number, total: number, file: string) => void;
  onBlock?: (block: BlockReport) => void;
  /**
   * A server is running on the folder. It keeps the index in memory and saves the index files every
   * 5 minutes once the log grew by index_save_blocks blocks (and at shutdown; a restart replays the log
   * from the saved position), and may be writing a record: missing or stale index files and a torn tail
   * of the newest block are then its normal state, reported as notes, not problems.
   */
  live?: boolean;
}

const MAX_EXAMPLES = 10;

/** How a link that is not the queue's previous head turned out (see checkOddLink). */
type OddLink = 'restart' | 'deleted' | 'filler' | 'bad' | 'skip';

/** The seq of the batch mark an entry at `seq` links back to (0: none yet). */
function previousMark(seq: number): number {
  return Math.floor((seq - 1) / QUEUE_BATCH_SIZE) * QUEUE_BATCH_SIZE;
}

interface IndexCheckState {
  kind: IndexKind;
  read: IndexFileRead;
  bound: number | null;
  checked: boolean;
  /** Per file entry: disagreed with the rebuilt index at `bound`. */
  mismatch: Uint8Array;
  /** Keys the rebuilt index had at `bound` that the file lacks. */
  missingKeys: number;
  missingExamples: string[];
}

function keyText(table: IdTable, e: number): string {
  const [a, b] = keyOf(table, e);
  return `${a}:${b}`;
}

function wordsText(key: [number, number, number, number]): string {
  const buf = Buffer.allocUnsafe(16);
  key.forEach((w, i) => buf.writeUInt32BE(w, i * 4));
  return `${buf.readBigInt64BE(0)}:${buf.readBigInt64BE(8)}`;
}

export function verifyFolder(root: string, options: VerifyOptions): VerifyReport {
  const reader = new FolderReader(root, options.blockSize);
  try {
    return new Verifier(reader, options).run();
  } finally {
    reader.close();
  }
}

class Verifier {
  private readonly problems: Problem[] = [];
  private readonly notes: string[] = [];
  private readonly folder: FolderLayout;
  private readonly rebuilt: RebuiltIndex;
  private readonly recordsByCmd = new Map<number, number>();
  private records = 0;
  private fillers = 0;
  private readonly chains: ChainReport = {
    peerEntries: 0,
    groupEntries: 0,
    users: 0,
    groups: 0,
    linksToPreviousHead: 0,
    linksSkippingEntries: 0,
    linksRestarting: 0,
    linksIntoDeletedBlocks: 0,
    linksIntoFillers: 0,
    messagesFilled: 0,
    badLinks: 0,
    badMessagePointers: 0,
    malformedEntries: 0,
    foreignEntries: 0,
    seqsChecked: 0,
    badSeqs: 0,
    batchMarks: 0,
  };
  private chainExamples = 0;
  private lastRecord: { id: number; cmd: number; filler: boolean } | null = null;
  /** Message ids already found to be readable messages (a fan-out points many entries at one). */
  private readonly goodMessages = new Set<number>();
  private readonly checks: IndexCheckState[] = [];
  /** The first id the log can hold (blocks before the first present one were deleted by retention). */
  private firstId = 0;
  /** No block was deleted by retention, so each queue's count starts where its sequence does. */
  private wholeLog = true;

  constructor(
    private readonly reader: FolderReader,
    private readonly options: VerifyOptions,
  ) {
    this.folder = folderLayout(reader);
    this.rebuilt = new RebuiltIndex(this.folder.layout);
  }

  private problem(p: Problem): void {
    const note = this.options.live ? this.liveNote(p) : null;
    if (note) this.notes.push(note);
    else this.problems.push(p);
  }

  /** What a running server's folder shows by design, in words; null for a real problem. */
  private liveNote(p: Problem): string | null {
    if (p.kind === 'index-missing')
      return (
        `${p.file} not yet saved (information: the running server holds the index in memory and saves ` +
        `it every 5 minutes once the log grew by index_save_blocks blocks, and at shutdown)`
      );
    if (p.kind === 'index-stale')
      return `${p.message.replace(/ \(repair will update it\)/, '')} (information: the running server saves it later)`;
    if (p.kind === 'torn-tail' && p.file === blockFileName(this.reader.newestBlock))
      return `${p.file} ends in a record being written (information: the server is writing)`;
    return null;
  }

  run(): VerifyReport {
    const reader = this.reader;
    const root = reader.root;
    const state = readStateFile(root);
    const stateLogEnd = state.status === 'read' ? state.state.logEnd : null;
    for (const kind of ['peer', 'group'] as const) {
      const read = readIndexFile(root, this.folder.layout.specs[kind]);
      let bound: number | null = null;
      if (read.status === 'read') {
        const newest = read.entries.length > 0 ? read.maxId + 1 : 0;
        bound = Math.max(newest, stateLogEnd ?? 0);
      }
      this.checks.push({
        kind,
        read,
        bound,
        checked: false,
        mismatch: new Uint8Array(read.status === 'read' ? read.entries.length : 0),
        missingKeys: 0,
        missingExamples: [],
      });
    }

    const blocks: BlockReport[] = [];
    const total = reader.blocks.reduce((sum, b) => sum + Math.max(0, reader.fileSize(b)), 0);
    let doneBefore = 0;
    let scanComplete = true;
    let logEnd = 0;
    // Retention deletes blocks from the front: the log starts at the oldest block present.
    let expected = reader.blocks[0] ?? 0;
    this.firstId = reader.idOf(expected, BLOCK_HEADER_SIZE);
    this.wholeLog = expected === 0;
    for (const b of reader.blocks) {
      for (; expected < b; expected++) {
        const file = blockFileName(expected);
        blocks.push({ file, size: 0, records: 0, end: 0, status: 'missing' });
        this.problem({
          kind: 'block-missing',
          file,
          message: `${file} is missing: the history it held is gone`,
          repairable: false,
        });
        scanComplete = false;
      }
      expected = b + 1;
      const report = this.verifyBlock(b, (offset) =>
        this.options.onProgress?.(doneBefore + offset, total, blockFileName(b)),
      );
      if (report.status !== 'ok') scanComplete = false;
      if (b === reader.newestBlock) logEnd = reader.idOf(b, Math.max(report.end, BLOCK_HEADER_SIZE));
      doneBefore += Math.max(0, report.size);
      this.options.onProgress?.(doneBefore, total, report.file);
      blocks.push(report);
      this.options.onBlock?.(report);
    }
    this.runChecksUpTo(Infinity);
    this.chains.users = this.rebuilt.peers.size;
    this.chains.groups = this.rebuilt.groups.size;

    const peer = this.indexReport(this.checks[0], logEnd, scanComplete);
    const group = this.indexReport(this.checks[1], logEnd, scanComplete);
    let stateReport: VerifyReport['index']['state'];
    if (state.status === 'missing') {
      stateReport = {
        status: 'missing',
        message: 'index_state is absent (a Go-written folder, or one never saved by this server)',
      };
    } else if (state.status === 'bad') {
      stateReport = { status: 'bad', message: `index_state is unreadable: ${state.reason}` };
      this.problem({
        kind: 'state-bad',
        file: 'index_state',
        message: stateReport.message,
        repairable: true,
      });
    } else if (state.state.logEnd > logEnd) {
      stateReport = {
        status: 'past-log',
        logEnd: state.state.logEnd,
        message: `index_state says the index reflects the log up to ${state.state.logEnd}, past the end of the log (${logEnd})`,
      };
      this.problem({
        kind: 'state-bad',
        file: 'index_state',
        message: stateReport.message,
        repairable: true,
      });
    } else {
      stateReport = {
        status: 'ok',
        logEnd: state.state.logEnd,
        message: `index_state: the index reflects the log up to ${state.state.logEnd}`,
      };
    }

    const recordsByCmd: Record<string, number> = {};
    for (const [cmd, n] of [...this.recordsByCmd.entries()].sort((a, b) => a[0] - b[0]))
      recordsByCmd[cmdName(cmd)] = n;
    return {
      dataDir: root,
      queueFormat: this.folder.queueFormat,
      blockSize: this.options.blockSize,
      blockSizeSource: this.options.blockSizeSource,
      blocks,
      logEnd,
      firstId: this.firstId,
      records: this.records,
      fillers: this.fillers,
      recordsByCmd,
      scanComplete,
      index: { peer, group, state: stateReport },
      chains: this.chains,
      checksums: this.checksumReport(blocks),
      problems: this.problems,
      live: this.options.live === true,
      notes: this.notes,
      clean: this.problems.length === 0,
    };
  }

  private checksumReport(blocks: BlockReport[]): VerifyReport['checksums'] {
    const blocksWithout = blocks.filter((b) => b.checksums === 'none').map((b) => b.file);
    const { checked, unchecked } = this.reader;
    let message = `checksums: ${checked} records checked`;
    if (blocksWithout.length > 0) {
      message +=
        `; ${blocksWithout.length} blocks have no checksum sidecar (written by Go: ${blocksWithout.join(', ')}); ` +
        `after a clean verify, 'ims repair --checksums' creates them`;
    } else if (unchecked > 0) message += `; ${unchecked} records have no checksum`;
    return { checked, unchecked, blocksWithout, message };
  }

  private verifyBlock(b: number, onProgress: (offset: number) => void): BlockReport {
    const reader = this.reader;
    const file = blockFileName(b);
    const size = reader.fileSize(b);
    const newest = b === reader.newestBlock;
    const headerProblem = reader.headerProblem(b);
    if (headerProblem) {
      // An incomplete header of the newest block is a crash while creating it; the engine rewrites it.
      const torn = newest && size < BLOCK_HEADER_SIZE;
      this.problem({
        kind: torn ? 'torn-tail' : 'block-header',
        file,
        offset: 0,
        message: `${file} offset 0: ${headerProblem}${torn ? ' (a block created just before a crash)' : ''}`,
        repairable: torn,
      });
      return {
        file,
        size,
        records: 0,
        end: 0,
        status: torn ? 'torn-tail' : 'bad-header',
        bad: { offset: 0, reason: headerProblem, nextWholeRecord: null },
      };
    }
    let records = 0;
    const sidecar = readSidecar(reader.root, b);
    const sums = sidecar.status === 'ok' ? sidecar.sums : null;
    const checksums = sidecar.status === 'ok' ? 'ok' : sidecar.status === 'missing' ? 'none' : 'bad';
    if (sidecar.status === 'bad') {
      this.problem({
        kind: 'checksum-file',
        file: `${CHECKSUM_DIR}/${checksumFileName(b)}`,
        message: `${CHECKSUM_DIR}/${checksumFileName(b)}: ${sidecar.problem} (its block's records are unchecked; 'ims repair --checksums' rewrites it)`,
        repairable: true,
      });
    }
    const scan = reader.scan(
      b,
      BLOCK_HEADER_SIZE,
      (id, msg) => {
        records++;
        this.onRecord(id, msg);
      },
      onProgress,
      sums,
    );
    if (size > this.options.blockSize) {
      this.problem({
        kind: 'block-too-big',
        file,
        message: `${file} is ${size} bytes, more than the block size ${this.options.blockSize} (wrong --block-size?)`,
        repairable: false,
      });
    }
    if (scan.problem === null) {
      return {
        file,
        size,
        records,
        end: scan.end,
        status: size > this.options.blockSize ? 'too-big' : 'ok',
        checksums,
      };
    }
    const next = reader.nextWholeRecord(b, scan.end, sums);
    const bad = { offset: scan.end, reason: scan.problem, nextWholeRecord: next };
    if (next === null && newest) {
      this.problem({
        kind: 'torn-tail',
        file,
        offset: scan.end,
        message:
          `${file} offset ${scan.end}: ${scan.problem}; no whole record follows, so the last ` +
          `${size - scan.end} bytes are a torn tail (repair cuts them, keeping a copy)`,
        repairable: true,
      });
      return { file, size, records, end: scan.end, status: 'torn-tail', bad, checksums };
    }
    const after =
      next === null
        ? `it is not the newest block, so its end must be whole (disk damage, not a torn write)`
        : `whole records follow at offset ${next}, so this is damage inside the log, not a torn tail`;
    this.problem({
      kind: scan.problem.startsWith('checksum mismatch') ? 'checksum-mismatch' : 'damaged-record',
      file,
      offset: scan.end,
      message: `${file} offset ${scan.end}: ${scan.problem}; ${after}`,
      repairable: false,
    });
    return { file, size, records, end: scan.end, status: 'damaged', bad, checksums };
  }

  private onRecord(id: number, msg: RawMessage): void {
    this.runChecksUpTo(id);
    this.records++;
    this.recordsByCmd.set(msg.cmd, (this.recordsByCmd.get(msg.cmd) ?? 0) + 1);
    if (isFiller(msg)) this.fillers++;
    if (isQueueCmd(msg.cmd)) this.checkEntry(id, msg);
    this.rebuilt.apply(id, msg);
    this.lastRecord = { id, cmd: msg.cmd, filler: isFiller(msg) };
  }

  private chainProblem(
    kind: 'chain-pointer' | 'message-pointer' | 'malformed-entry' | 'foreign-entry' | 'queue-seq',
    id: number,
    message: string,
  ): void {
    if (kind === 'chain-pointer') this.chains.badLinks++;
    else if (kind === 'message-pointer') this.chains.badMessagePointers++;
    else if (kind === 'foreign-entry') this.chains.foreignEntries++;
    else if (kind === 'queue-seq') this.chains.badSeqs++;
    else this.chains.malformedEntries++;
    // Every bad pointer counts; only the first few are listed one by one.
    if (this.chainExamples++ >= MAX_EXAMPLES * 2) return;
    const file = blockFileName(this.reader.blockOf(id));
    const offset = this.reader.offsetOf(id);
    this.problem({ kind, file, offset, message: `${file} offset ${offset}: ${message}`, repairable: false });
  }

  /** Checks a link that is not the queue's previous head: it must still point backwards into the same queue. */
  private checkOddLink(
    entryId: number,
    what: string,
    target: number,
    sameQueue: (msg: RawMessage) => string | null,
  ): OddLink {
    if (target === 0) {
      this.chains.linksRestarting++;
      return 'restart';
    }
    if (target < this.firstId) {
      // Into a block deleted by retention: the chain ends there, as every query's walk does.
      this.chains.linksIntoDeletedBlocks++;
      return 'deleted';
    }
    if (!(target < entryId)) {
      this.chainProblem(
        'chain-pointer',
        entryId,
        `${what} ${target} does not point backwards (entry id ${entryId})`,
      );
      return 'bad';
    }
    const rec = this.reader.read(target);
    if (rec.kind !== 'ok') {
      this.chainProblem(
        'chain-pointer',
        entryId,
        `${what} ${target} is not a readable record: ${rec.reason}`,
      );
      return 'bad';
    }
    if (isFiller(rec.message)) {
      // A damaged entry repair replaced: the chain ends there, as every query's walk does.
      this.chains.linksIntoFillers++;
      return 'filler';
    }
    const why = sameQueue(rec.message);
    if (why) {
      this.chainProblem('chain-pointer', entryId, `${what} ${target} points at ${why}`);
      return 'bad';
    }
    this.chains.linksSkippingEntries++;
    return 'skip';
  }

  private checkMessagePointer(entryId: number, msgid: number): void {
    if (!(msgid > 0 && msgid < entryId)) {
      this.chainProblem(
        'message-pointer',
        entryId,
        `msgid ${msgid} does not point backwards at a message (entry id ${entryId})`,
      );
      return;
    }
    if (msgid > 0 && msgid < this.firstId) return; // in a block retention deleted
    if (this.lastRecord && this.lastRecord.id === msgid && !isQueueCmd(this.lastRecord.cmd)) {
      if (this.lastRecord.filler) this.chains.messagesFilled++;
      return;
    }
    if (this.goodMessages.has(msgid)) return;
    const rec = this.reader.read(msgid);
    if (rec.kind !== 'ok') {
      this.chainProblem('message-pointer', entryId, `msgid ${msgid} is not a readable record: ${rec.reason}`);
      return;
    }
    if (isFiller(rec.message)) {
      this.chains.messagesFilled++;
      return;
    }
    if (isQueueCmd(rec.message.cmd)) {
      this.chainProblem(
        'message-pointer',
        entryId,
        `msgid ${msgid} points at a queue entry (${cmdName(rec.message.cmd)}), not a message`,
      );
      return;
    }
    if (this.goodMessages.size > 100_000) this.goodMessages.clear();
    this.goodMessages.add(msgid);
  }

  /**
   * Checks a queue entry of either format against its queue's head before it (the rebuilt index):
   * prev_msgid, prev_peer_msgid (user queues), the message it points at, and for v4 entries the
   * sequence number and the batch link.
   */
  private checkEntry(id: number, msg: RawMessage): void {
    const entry = decodeQueueEntry(msg.cmd, msg.flag, msg.body);
    if (!entry) {
      this.chainProblem(
        'malformed-entry',
        id,
        `${cmdName(msg.cmd)} body of ${msg.body.length} bytes is not a queue entry`,
      );
      return;
    }
    const format = this.folder.formatAt(id);
    if (!QUEUE_CMDS_OF[format].has(msg.cmd)) {
      const sw = this.folder.queueFormat.switched;
      const where = sw
        ? id < sw.since
          ? ` below its switch point ${sw.since}`
          : ` from its switch point ${sw.since} on`
        : '';
      this.chainProblem(
        'foreign-entry',
        id,
        `${cmdName(msg.cmd)} is not a queue record of ${format}, the folder's queue format${where}`,
      );
      return;
    }
    const peer = entry.family === 'peer';
    if (peer) this.chains.peerEntries++;
    else this.chains.groupEntries++;
    const table = this.rebuilt.table(entry.family);
    const slots = this.folder.slots[entry.family];
    const e = table.find(...wordsOf(entry.appid, entry.owner));
    const owner = peer ? `${entry.appid}:${entry.owner}` : `group ${entry.appid}:${entry.owner}`;
    const sameQueue = (rec: RawMessage): string | null => {
      const other = decodeQueueEntry(rec.cmd, rec.flag, rec.body);
      if (!other || other.family !== entry.family)
        return `a ${cmdName(rec.cmd)} record, not a ${peer ? 'user queue' : 'group'} entry`;
      if (other.appid !== entry.appid || other.owner !== entry.owner) {
        return peer
          ? `an entry of user ${other.appid}:${other.owner}, not of ${owner}`
          : `an entry of group ${other.appid}:${other.owner}`;
      }
      return null;
    };

    // The entry a skipping prev_msgid points at (read by checkOddLink).
    const target: { entry: QueueEntry | null } = { entry: null };
    let prev: OddLink | 'head' = 'head';
    if (entry.prevMsgid === slotValue(table, e, slots.lastId)) this.chains.linksToPreviousHead++;
    else {
      prev = this.checkOddLink(id, `prev_msgid of ${owner}`, entry.prevMsgid, (rec) => {
        const why = sameQueue(rec);
        if (!why) target.entry = decodeQueueEntry(rec.cmd, rec.flag, rec.body);
        return why;
      });
    }
    // The old MSG_OFFLINE has no separate peer link; group queues have none.
    if (slots.lastPeerId >= 0 && msg.cmd !== Cmd.OFFLINE) {
      if (entry.prevPeerMsgid === slotValue(table, e, slots.lastPeerId)) this.chains.linksToPreviousHead++;
      else this.checkOddLink(id, `prev_peer_msgid of ${owner}`, entry.prevPeerMsgid, sameQueue);
    }
    if (V4_QUEUE_CMDS.has(msg.cmd)) {
      this.checkSequence(id, entry, owner, slotValue(table, e, slots.lastSeq), prev, target.entry);
      this.checkBatchLink(id, entry, owner, slotValue(table, e, slots.lastBatchId), sameQueue);
    }
    this.checkMessagePointer(id, entry.msgid);
  }

  /**
   * A v4 entry's seq is one more than the entry it follows: the queue's count before it when it links
   * to the head, its target's seq after a skipping link (Go's stale-index restart), 1 after a restart.
   */
  private checkSequence(
    id: number,
    entry: QueueEntry,
    owner: string,
    count: number,
    prev: OddLink | 'head',
    prevEntry: QueueEntry | null,
  ): void {
    let want: number | null = null;
    // After retention the count starts at the oldest block kept, not where the sequence began.
    if (prev === 'head') want = this.wholeLog ? count + 1 : null;
    else if (prev === 'restart') want = 1;
    // A v2 entry (below a switch point) carries no seq: only the count knows it.
    else if (prev === 'skip' && prevEntry && prevEntry.seq > 0) want = prevEntry.seq + 1;
    if (entry.seq > 0 && entry.seq % QUEUE_BATCH_SIZE === 0) this.chains.batchMarks++;
    if (want === null) return;
    this.chains.seqsChecked++;
    if (entry.seq !== want) {
      this.chainProblem(
        'queue-seq',
        id,
        `seq ${entry.seq} of ${owner} should be ${want}, one more than the entry it follows` +
          (prev === 'head' ? ` (the queue holds ${count} entries before it)` : ''),
      );
    }
  }

  /** A v4 entry links to the previous batch mark: the queue's newest entry whose seq is a multiple of 1000. */
  private checkBatchLink(
    id: number,
    entry: QueueEntry,
    owner: string,
    headMark: number,
    sameQueue: (msg: RawMessage) => string | null,
  ): void {
    if (entry.prevBatchMsgid === headMark) {
      this.chains.linksToPreviousHead++;
      return;
    }
    const wantSeq = previousMark(entry.seq);
    this.checkOddLink(id, `prev_batch_msgid of ${owner}`, entry.prevBatchMsgid, (rec) => {
      const why = sameQueue(rec);
      if (why) return why;
      if (!V4_QUEUE_CMDS.has(rec.cmd)) return `a ${cmdName(rec.cmd)} entry, which is never a batch mark`;
      const mark = decodeQueueEntry(rec.cmd, rec.flag, rec.body)!;
      if (mark.seq % QUEUE_BATCH_SIZE !== 0 || mark.seq === 0)
        return `the entry at seq ${mark.seq}, not a batch mark (a multiple of ${QUEUE_BATCH_SIZE})`;
      if (mark.seq !== wantSeq)
        return `the batch mark at seq ${mark.seq}, not the previous one of an entry at seq ${entry.seq} (seq ${wantSeq})`;
      return null;
    });
  }

  /** Compares each index file with the rebuilt index once the walk reaches the position the file reflects. */
  private runChecksUpTo(id: number): void {
    for (const check of this.checks) {
      if (check.checked || check.bound === null || check.read.status !== 'read') continue;
      if (id < check.bound) continue;
      check.checked = true;
      const table = this.rebuilt.table(check.kind);
      const values = this.folder.layout.specs[check.kind].values;
      let matchedKeys = 0;
      check.read.entries.forEach((entry, i) => {
        const e = table.find(...entry.key);
        if (e >= 0) matchedKeys++;
        for (let v = 0; v < values; v++) {
          const want = e < 0 ? 0 : table.getValue(e, v);
          if (entry.values[v] !== want) check.mismatch[i] = 1;
        }
      });
      check.missingKeys = table.size - matchedKeys;
      if (check.missingKeys > 0) {
        const fileKeys = new Set(check.read.entries.map((x) => wordsText(x.key)));
        for (let e = 0; e < table.size && check.missingExamples.length < MAX_EXAMPLES; e++) {
          const k = keyText(table, e);
          if (!fileKeys.has(k)) check.missingExamples.push(k);
        }
      }
    }
  }

  private indexReport(check: IndexCheckState, logEnd: number, scanComplete: boolean): IndexReport {
    const { name: file, values, idSlots } = this.folder.layout.specs[check.kind];
    const table = this.rebuilt.table(check.kind);
    const names = INDEX_VALUE_NAMES[this.folder.layout.format][check.kind].map(goValueName);
    const named = (vals: number[]) => vals.map((v, i) => `${names[i]}=${v}`).join(' ');
    const base = {
      file,
      entries: 0,
      rebuiltEntries: table.size,
      reflectsBefore: check.bound,
      wrongEntries: 0,
      staleEntries: 0,
      pastLogEntries: 0,
      duplicateKeys: 0,
      examples: [] as string[],
    };
    const read = check.read;
    if (read.status === 'missing') {
      const message = `${file} is missing (repair rebuilds it from the blocks)`;
      this.problem({ kind: 'index-missing', file, message, repairable: true });
      return { ...base, status: 'missing', message };
    }
    if (read.status === 'unreadable') {
      const message = `${file} cannot be read: ${read.reason}`;
      this.problem({ kind: 'index-unreadable', file, message, repairable: true });
      return { ...base, status: 'unreadable', message };
    }
    if (read.status === 'truncated') {
      const message = `${file}: ${read.reason} (repair rebuilds it)`;
      this.problem({ kind: 'index-truncated', file, message, repairable: true });
      return { ...base, status: 'truncated', message };
    }
    const report: IndexReport = {
      ...base,
      status: 'ok',
      entries: read.entries.length,
      duplicateKeys: read.duplicates,
      message: '',
    };
    let found = 0;
    read.entries.forEach((entry, i) => {
      if (table.find(...entry.key) >= 0) found++;
      // Ids must lie in the log; counts (a v4 queue's seq) are compared with the rebuild below.
      const past = idSlots.some((v) => !(entry.values[v] < logEnd));
      if (past) {
        report.pastLogEntries++;
        if (report.examples.length < MAX_EXAMPLES) {
          report.examples.push(
            `${wordsText(entry.key)} -> ${named(entry.values)} (past the log end ${logEnd})`,
          );
        }
      } else if (check.mismatch[i]) {
        report.wrongEntries++;
        if (report.examples.length < MAX_EXAMPLES) {
          const e = table.find(...entry.key);
          const says = e < 0 ? 'no entry' : named([...Array(values).keys()].map((v) => table.getValue(e, v)));
          report.examples.push(`${wordsText(entry.key)} -> ${named(entry.values)} (the blocks say ${says})`);
        }
      } else {
        const e = table.find(...entry.key);
        for (let v = 0; v < values; v++) {
          if (entry.values[v] !== (e < 0 ? 0 : table.getValue(e, v))) {
            report.staleEntries++;
            break;
          }
        }
      }
    });
    report.wrongEntries += check.missingKeys + read.duplicates;
    for (const k of check.missingExamples) {
      if (report.examples.length < MAX_EXAMPLES) report.examples.push(`${k} is missing from ${file}`);
    }
    // Queues that began after the position the file reflects: stale, not wrong.
    const newKeys = table.size - found - check.missingKeys;
    if (newKeys > 0 && report.pastLogEntries === 0) report.staleEntries += newKeys;
    const partial = scanComplete
      ? ''
      : ' (compared with a partial rebuild: damage stopped the walk of a block)';
    if (report.pastLogEntries > 0) {
      report.status = 'past-log';
      report.message = `${file}: ${report.pastLogEntries} of ${report.entries} entries point past the end of the log (${logEnd}) (repair rebuilds it)`;
      this.problem({ kind: 'index-past-log', file, message: report.message, repairable: true });
    } else if (report.wrongEntries > 0) {
      report.status = 'wrong';
      report.message =
        `${file}: ${report.wrongEntries} entries disagree with the index rebuilt from the blocks up to ` +
        `${check.bound}, the position the file reflects${read.duplicates ? ` (${read.duplicates} duplicate keys)` : ''}${partial} (repair rebuilds it)`;
      this.problem({ kind: 'index-wrong', file, message: report.message, repairable: true });
    } else if (report.staleEntries > 0) {
      report.status = 'stale';
      report.message =
        `${file}: stale (repair will update it): it reflects the log before id ${check.bound}; ` +
        `${report.staleEntries} queues changed after that${partial}`;
      this.problem({ kind: 'index-stale', file, message: report.message, repairable: true });
    } else {
      report.message = `${file}: ${report.entries} entries, equal to the index rebuilt from the blocks${partial}`;
    }
    return report;
  }
}
