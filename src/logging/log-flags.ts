/**
 * The glog flags Go's ims took, parsed the way Go's `flag` package parses them: `-name`, `--name`,
 * `-name=value`, and `-name value` for the non-boolean ones. What each one means here:
 *
 * - `-v=N`: verbosity. 0 (default) logs log/warn/error/fatal; 1 adds debug; 2 or more adds verbose.
 * - `-logtostderr`: every log line goes to stderr (nothing to stdout) and no log file is written.
 * - `-alsologtostderr`: with `-log_dir`, log lines go to the file and to stderr.
 * - `-log_dir=DIR`: log lines are appended to `DIR/ims.log` (created if missing) and not printed,
 *   except errors and fatals, which also go to stderr (glog's default stderrthreshold).
 * - `-log_format=json`: every line, the version banner included, is one JSON object (Nest's ConsoleLogger
 *   JSON mode: level, pid, timestamp, message, context) on whichever sink the flags above choose.
 *   `text` (default) keeps Nest's text lines. Not a glog flag; it follows glog's spelling.
 * - none of them: log lines go to the console (log/debug/verbose/warn to stdout, error/fatal to
 *   stderr; Nest's default). glog wrote files in the temp folder instead; containers want the console.
 */
export interface LogFlags {
  verbosity: number;
  logToStderr: boolean;
  alsoLogToStderr: boolean;
  logDir: string | null;
  format: 'text' | 'json';
}

export class FlagError extends Error {}

const BOOL_FLAGS = new Set(['logtostderr', 'alsologtostderr']);
const VALUE_FLAGS = new Set(['v', 'log_dir', 'log_format']);

function parseBool(name: string, value: string): boolean {
  if (/^(1|t|true)$/i.test(value)) return true;
  if (/^(0|f|false)$/i.test(value)) return false;
  throw new FlagError(`invalid boolean value "${value}" for flag -${name}`);
}

/** Splits argv into the log flags and the remaining positional arguments; an unknown flag is an error. */
export function parseLogFlags(argv: string[]): { flags: LogFlags; args: string[] } {
  const flags: LogFlags = {
    verbosity: 0,
    logToStderr: false,
    alsoLogToStderr: false,
    logDir: null,
    format: 'text',
  };
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--') {
      args.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('-') || arg === '-') {
      args.push(arg);
      continue;
    }
    const body = arg.replace(/^--?/, '');
    const eq = body.indexOf('=');
    const name = eq < 0 ? body : body.slice(0, eq);
    let value: string | undefined = eq < 0 ? undefined : body.slice(eq + 1);
    if (BOOL_FLAGS.has(name)) {
      const on = value === undefined ? true : parseBool(name, value);
      if (name === 'logtostderr') flags.logToStderr = on;
      else flags.alsoLogToStderr = on;
      continue;
    }
    if (!VALUE_FLAGS.has(name)) throw new FlagError(`flag provided but not defined: -${name}`);
    if (value === undefined) {
      if (i + 1 >= argv.length) throw new FlagError(`flag needs an argument: -${name}`);
      value = argv[++i];
    }
    if (name === 'v') {
      if (!/^\d+$/.test(value))
        throw new FlagError(`invalid value "${value}" for flag -v: not a whole number`);
      flags.verbosity = Number(value);
    } else if (name === 'log_format') {
      if (value !== 'text' && value !== 'json')
        throw new FlagError(`invalid value "${value}" for flag -log_format: text or json`);
      flags.format = value;
    } else {
      if (value === '') throw new FlagError('flag -log_dir needs a folder');
      flags.logDir = value;
    }
  }
  return { flags, args };
}

export const LOG_FLAGS_USAGE =
  'flags: -v=N (1: debug, 2: verbose), -logtostderr, -alsologtostderr, -log_dir=DIR (log to DIR/ims.log), ' +
  '-log_format=text|json';
