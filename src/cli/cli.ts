/**
 * Operator tools: `ims verify|inspect|repair DATA_DIR ...`. They share the storage codecs with the
 * server; verify and inspect only read, repair writes only with the server stopped.
 * Exit codes: 0 clean / done, 1 problems found (or repair refused), 2 usage error.
 */
import * as fs from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { BLOCK_HEADER_SIZE, BLOCK_SIZE } from '../format/constants.js';
import { listBlocks } from '../storage/block-files.js';
import { describeOwner, lockHolder } from '../storage/data-dir-lock.js';
import { clusterInit, clusterResetIsr, clusterStatus, formatClusterStatus } from './cluster.js';
import { runInspect, type InspectTarget } from './inspect.js';
import { describeQueueFormat, readStateFile } from './index-model.js';
import { ProgressBar } from './progress.js';
import { runRepair } from './repair.js';
import { runBackup } from './backup.js';
import { runUpgrade } from './upgrade.js';
import { verifyFolder, type BlockReport, type VerifyReport } from './verify.js';

export const CLI_COMMANDS = ['verify', 'inspect', 'repair', 'backup', 'upgrade', 'cluster'] as const;

export const EXIT_OK = 0;
export const EXIT_PROBLEMS = 1;
export const EXIT_USAGE = 2;

/** The operator tools' usage (also part of `ims --help`). */
export const TOOLS_USAGE = `usage:
  ims verify DATA_DIR [--json] [--block-size N]
      check every block, the index files and every queue chain; exit 0 clean, 1 problems found
  ims inspect DATA_DIR [--user APPID:UID [--peer-only] | --group APPID:GID | --at MSGID | --from MSGID]
                       [--limit N] [--rebuild] [--json] [--block-size N]
      print records decoded (a user's or group's queue newest first, one record, or the log in order)
  ims repair DATA_DIR [--dry-run] [--json] [--block-size N] [--checksums | --damaged cut|fill]
      with the server stopped: cut a torn tail (the bytes are kept) and rebuild or update the index files;
      --checksums: after a clean verify, create checksum sidecars for blocks that have none (Go-written);
      --damaged: a bad record with whole records after it, which repair otherwise refuses to touch:
        fill  overwrite it (up to the next whole record) with one filler record every reader skips;
        cut   cut its block there, whole records after it included; the bytes are kept aside either way
  ims backup --from HOST:SYNC_PORT DIR [--block-size N]
      copy a running server's log up to its end at the moment of connecting into DIR (a data folder);
      run again on the same DIR to continue from where it stopped
  ims upgrade --queue-format v4 DATA_DIR [--json] [--block-size N]
      with the server stopped: switch a v2 (Go ims 2.0) folder to v4 queues (newest GoBelieve); every
      message and sync key stays valid, unread counts become exact; Go 2.0 can no longer serve the folder
  ims cluster init --etcd HOST:PORT[,…] --cluster NAME --shards N
      write a cluster's shard map in etcd (refuses to change an existing one)
  ims cluster status --etcd HOST:PORT[,…] --cluster NAME [--json]
      each shard's master, epoch, nodes and lag
  ims cluster reset-isr --etcd HOST:PORT[,…] --cluster NAME --shard N [--to NODE] --accept-data-loss
      a shard whose recorded in-sync set holds only dead nodes: record one live node (default: the
      longest log) as the whole set so that it leads; says what is lost, refuses without the flag`;

class UsageError extends Error {}
class HelpRequested extends Error {}

const print = (line: string): void => {
  process.stdout.write(line + '\n');
};

/** Runs a tool; returns the process exit code (0 clean, 1 problems found, 2 usage error). */
export async function runCli(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'verify':
        return verifyCommand(rest);
      case 'inspect':
        return inspectCommand(rest);
      case 'repair':
        return await repairCommand(rest);
      case 'cluster':
        return await clusterCommand(rest);
      case 'backup':
        return await backupCommand(rest);
      case 'upgrade':
        return await upgradeCommand(rest);
      default:
        throw new UsageError(`unknown command ${JSON.stringify(command ?? '')}`);
    }
  } catch (err) {
    if (err instanceof HelpRequested) {
      print(TOOLS_USAGE);
      return EXIT_OK;
    }
    if (err instanceof UsageError || isParseArgsError(err)) {
      process.stderr.write(`ims ${command ?? ''}: ${(err as Error).message}\n${TOOLS_USAGE}\n`);
      return EXIT_USAGE;
    }
    process.stderr.write(`ims ${command}: ${(err as Error).message}\n`);
    return EXIT_PROBLEMS;
  }
}

async function clusterCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  const parsed = parseArgs({
    args: rest,
    options: {
      etcd: { type: 'string' },
      cluster: { type: 'string' },
      shards: { type: 'string' },
      shard: { type: 'string' },
      to: { type: 'string' },
      'accept-data-loss': { type: 'boolean' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  const v = parsed.values;
  if (v.help) throw new HelpRequested();
  if (!v.etcd) throw new UsageError('--etcd HOST:PORT[,…] is missing');
  if (!v.cluster) throw new UsageError('--cluster NAME is missing');
  if (sub === 'init') {
    if (!v.shards) throw new UsageError('--shards N is missing');
    print(await clusterInit(v.etcd, v.cluster, positiveInt('shards', v.shards)));
    return EXIT_OK;
  }
  if (sub === 'status') {
    const report = await clusterStatus(v.etcd, v.cluster);
    print(v.json ? JSON.stringify(report, null, 2) : formatClusterStatus(report));
    return EXIT_OK;
  }
  if (sub === 'reset-isr') {
    if (v.shard === undefined) throw new UsageError('--shard N is missing');
    const shard = Number(v.shard);
    if (!Number.isInteger(shard) || shard < 0)
      throw new UsageError(`--shard must be 0 or more, not ${v.shard}`);
    const r = await clusterResetIsr({
      etcd: v.etcd,
      cluster: v.cluster,
      shard,
      to: v.to,
      acceptDataLoss: v['accept-data-loss'] === true,
    });
    if (r.done) print(r.text);
    else process.stderr.write(`ims cluster reset-isr: ${r.text}\n`);
    return r.done ? EXIT_OK : EXIT_PROBLEMS;
  }
  throw new UsageError(`unknown cluster command ${JSON.stringify(sub ?? '')} (init, status or reset-isr)`);
}

function isParseArgsError(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException)?.code;
  return typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS');
}

const COMMON = {
  json: { type: 'boolean' },
  'block-size': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

function parse(args: string[], options: NonNullable<ParseArgsConfig['options']>) {
  const parsed = parseArgs({ args, options, allowPositionals: true, strict: true });
  if ((parsed.values as Record<string, unknown>).help) throw new HelpRequested();
  if (parsed.positionals.length === 0) throw new UsageError('DATA_DIR is missing');
  if (parsed.positionals.length > 1)
    throw new UsageError(`unexpected argument ${JSON.stringify(parsed.positionals[1])}`);
  return {
    values: parsed.values as Record<string, string | boolean | undefined>,
    dataDir: parsed.positionals[0],
  };
}

function checkDataDir(dir: string): void {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(dir);
  } catch {
    throw new UsageError(`DATA_DIR ${dir} does not exist`);
  }
  if (!stat.isDirectory()) throw new UsageError(`DATA_DIR ${dir} is not a folder`);
  if (listBlocks(dir).length === 0)
    throw new UsageError(`DATA_DIR ${dir} has no message_N block files: not an ims data folder`);
}

function positiveInt(name: string, text: string): number {
  if (!/^\d+$/.test(text))
    throw new UsageError(`--${name} must be a positive integer, not ${JSON.stringify(text)}`);
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1)
    throw new UsageError(`--${name} must be a positive integer, not ${JSON.stringify(text)}`);
  return n;
}

/** The folder's block size: --block-size, else index_state's, else the default 128 MiB. */
function blockSizeOf(
  dir: string,
  option: string | boolean | undefined,
): { blockSize: number; blockSizeSource: string } {
  const state = readStateFile(dir);
  const recorded = state.status === 'read' ? state.state.blockSize : null;
  if (typeof option === 'string') {
    const n = positiveInt('block-size', option);
    if (n < BLOCK_HEADER_SIZE + 1024) throw new UsageError(`--block-size ${n} is too small`);
    if (recorded !== null && recorded !== n) {
      throw new UsageError(
        `--block-size ${n} disagrees with index_state, which says the folder uses ${recorded}-byte blocks`,
      );
    }
    return { blockSize: n, blockSizeSource: '--block-size' };
  }
  if (recorded !== null) return { blockSize: recorded, blockSizeSource: 'index_state' };
  return { blockSize: BLOCK_SIZE, blockSizeSource: 'default' };
}

/** `APPID:ID` with int64 parts. */
function pair(name: string, text: string): { appid: bigint; id: bigint } {
  const m = /^(-?\d+):(-?\d+)$/.exec(text);
  if (!m)
    throw new UsageError(
      `--${name} must be APPID:${name === 'user' ? 'UID' : 'GID'}, not ${JSON.stringify(text)}`,
    );
  const [appid, id] = [BigInt(m[1]), BigInt(m[2])];
  const limit = 2n ** 63n;
  if (appid >= limit || appid < -limit || id >= limit || id < -limit)
    throw new UsageError(`--${name} ${text}: out of the int64 range`);
  return { appid, id };
}

function blockLine(b: BlockReport): string {
  const what = `${b.file}: ${b.size} bytes, ${b.records} records`;
  switch (b.status) {
    case 'ok':
      return `${what}: ok`;
    case 'missing':
      return `${b.file}: MISSING`;
    case 'too-big':
      return `${what}: larger than the block size`;
    default:
      return `${what}: ${b.status.toUpperCase()} at offset ${b.bad?.offset}: ${b.bad?.reason}`;
  }
}

function verifyCommand(args: string[]): number {
  const { values, dataDir } = parse(args, COMMON);
  checkDataDir(dataDir);
  const sizes = blockSizeOf(dataDir, values['block-size']);
  const json = values.json === true;
  const holder = lockHolder(dataDir);
  if (holder) {
    process.stderr.write(
      `note: ${describeOwner(holder.owner)} is using this folder: index files it has not saved yet and ` +
        `a record it is writing are reported as information, not problems\n`,
    );
  }
  const bar = new ProgressBar();
  if (!json) print(`ims verify ${dataDir} (block size ${sizes.blockSize}, from ${sizes.blockSizeSource})`);
  const report = verifyFolder(dataDir, {
    ...sizes,
    live: holder !== null,
    onProgress: (done, total, file) => bar.update(done, total, file),
    onBlock: (b) => {
      bar.clear();
      if (!json) print(blockLine(b));
    },
  });
  bar.clear();
  if (json) print(JSON.stringify(report, null, 2));
  else printVerify(report);
  return report.clean ? EXIT_OK : EXIT_PROBLEMS;
}

function printVerify(r: VerifyReport): void {
  print(
    `log: ${r.records} records, ends at ${r.logEnd}${r.scanComplete ? '' : ' (walk incomplete: damage)'}`,
  );
  if (r.firstId > 32) {
    print(`log starts at ${r.firstId} (${r.blocks[0]?.file}): older blocks were deleted by retention`);
  }
  print(describeQueueFormat(r.queueFormat));
  print(r.index.peer.message);
  print(r.index.group.message);
  print(r.index.state.message);
  print(r.checksums.message);
  const c = r.chains;
  print(
    `chains: ${c.peerEntries} user queue entries (${c.users} users), ${c.groupEntries} group entries (${c.groups} groups); ` +
      `${c.linksToPreviousHead} links to the previous head, ${c.linksSkippingEntries} skipping entries, ` +
      `${c.linksRestarting} restarting at 0; ${c.badLinks} bad links, ${c.badMessagePointers} bad message pointers, ` +
      `${c.malformedEntries} malformed entries` +
      (c.foreignEntries > 0 ? `, ${c.foreignEntries} entries of the other queue format` : ''),
  );
  if (r.fillers > 0) {
    print(
      `fillers: ${r.fillers} records written by 'ims repair --damaged fill' over damaged bytes; ` +
        `${c.messagesFilled} queue entries point at one (queries skip it), ${c.linksIntoFillers} links end at one`,
    );
  }
  if (c.seqsChecked + c.batchMarks + c.badSeqs > 0) {
    print(
      `sequences: ${c.seqsChecked} entry seqs checked, ${c.badSeqs} wrong; ${c.batchMarks} batch marks` +
        (r.firstId > 32 ? ' (seqs after retention are not checked against the count)' : ''),
    );
  }
  for (const note of r.notes) print(`note: ${note}`);
  if (r.clean) {
    print(r.live ? 'clean (a server is running on this folder)' : 'clean');
    return;
  }
  print(`problems (${r.problems.length}):`);
  for (const p of r.problems)
    print(`  - [${p.kind}] ${p.message}${p.repairable ? '' : ' (not repairable by ims repair)'}`);
  const repairable = r.problems.filter((p) => p.repairable).length;
  print(`found ${r.problems.length} problems; ${repairable} can be fixed by 'ims repair'`);
}

function inspectCommand(args: string[]): number {
  const { values, dataDir } = parse(args, {
    ...COMMON,
    user: { type: 'string' },
    group: { type: 'string' },
    at: { type: 'string' },
    from: { type: 'string' },
    limit: { type: 'string' },
    'peer-only': { type: 'boolean' },
    rebuild: { type: 'boolean' },
  });
  const selectors = (['user', 'group', 'at', 'from'] as const).filter((k) => values[k] !== undefined);
  if (selectors.length > 1)
    throw new UsageError(
      `give only one of --user, --group, --at, --from (got ${selectors.map((s) => `--${s}`).join(', ')})`,
    );
  if (values['peer-only'] && values.user === undefined) throw new UsageError('--peer-only goes with --user');
  const limit = typeof values.limit === 'string' ? positiveInt('limit', values.limit) : 20;
  let target: InspectTarget;
  if (typeof values.user === 'string')
    target = { kind: 'user', ...pair('user', values.user), peerOnly: values['peer-only'] === true };
  else if (typeof values.group === 'string') target = { kind: 'group', ...pair('group', values.group) };
  else if (typeof values.at === 'string') target = { kind: 'at', msgId: positiveInt('at', values.at) };
  else if (typeof values.from === 'string')
    target = { kind: 'log', fromId: positiveInt('from', values.from) };
  else target = { kind: 'log', fromId: null };
  checkDataDir(dataDir);
  const sizes = blockSizeOf(dataDir, values['block-size']);
  return runInspect(dataDir, target, {
    blockSize: sizes.blockSize,
    limit,
    json: values.json === true,
    rebuild: values.rebuild === true,
    progress: new ProgressBar(),
    print,
  });
}

async function repairCommand(args: string[]): Promise<number> {
  const { values, dataDir } = parse(args, {
    ...COMMON,
    'dry-run': { type: 'boolean' },
    checksums: { type: 'boolean' },
    damaged: { type: 'string' },
  });
  const damaged = values.damaged;
  if (damaged !== undefined && damaged !== 'cut' && damaged !== 'fill')
    throw new UsageError(`--damaged must be cut or fill, not ${JSON.stringify(damaged)}`);
  if (damaged !== undefined && values.checksums)
    throw new UsageError('--checksums and --damaged are separate repairs: run one, then the other');
  checkDataDir(dataDir);
  const sizes = blockSizeOf(dataDir, values['block-size']);
  const json = values.json === true;
  const bar = new ProgressBar();
  return runRepair(dataDir, {
    ...sizes,
    dryRun: values['dry-run'] === true,
    checksums: values.checksums === true,
    damaged,
    json,
    print: (line) => {
      bar.clear();
      print(line);
    },
    onProgress: (done, total, file) => bar.update(done, total, file),
  });
}

async function upgradeCommand(args: string[]): Promise<number> {
  const { values, dataDir } = parse(args, { ...COMMON, 'queue-format': { type: 'string' } });
  const format = values['queue-format'];
  if (format === undefined) throw new UsageError('--queue-format v4 is missing');
  if (format !== 'v4')
    throw new UsageError(`--queue-format must be v4 (the only upgrade), not ${JSON.stringify(format)}`);
  checkDataDir(dataDir);
  const sizes = blockSizeOf(dataDir, values['block-size']);
  const r = await runUpgrade(dataDir, 'v4', { blockSize: sizes.blockSize });
  if (values.json === true) print(JSON.stringify(r));
  else if (!r.changed)
    print(`${dataDir} already serves queue_format v4 (since id ${r.since}); nothing to do`);
  else
    print(
      `${dataDir}: switched from queue_format ${r.from} to v4 at id ${r.since}; ${r.users} users and ` +
        `${r.groups} groups keep their history (v4 index files saved; Go 2.0 can no longer serve this folder)`,
    );
  return EXIT_OK;
}

async function backupCommand(args: string[]): Promise<number> {
  const { values, dataDir } = parse(args, { ...COMMON, from: { type: 'string' } });
  if (typeof values.from !== 'string') throw new UsageError('--from HOST:SYNC_PORT is missing');
  const m = /^(.*):(\d{1,5})$/.exec(values.from);
  if (!m) throw new UsageError(`--from must be HOST:SYNC_PORT, not ${JSON.stringify(values.from)}`);
  const host = m[1].replace(/^\[|\]$/g, '') || '127.0.0.1';
  const sizes = fs.existsSync(dataDir)
    ? blockSizeOf(dataDir, values['block-size'])
    : typeof values['block-size'] === 'string'
      ? { blockSize: positiveInt('block-size', values['block-size']), blockSizeSource: '--block-size' }
      : { blockSize: BLOCK_SIZE, blockSizeSource: 'default' };
  const bar = new ProgressBar();
  const started = Date.now();
  const r = await runBackup(dataDir, {
    host,
    port: Number(m[2]),
    blockSize: sizes.blockSize,
    progress: bar,
    print: (line) => {
      bar.clear();
      print(line);
    },
  });
  print(
    `backup of ${values.from} in ${dataDir}: ${r.records} records written, the log now ends at ${r.to} ` +
      `(was ${r.from}); fsynced, index files saved (${Date.now() - started} ms)`,
  );
  return EXIT_OK;
}
