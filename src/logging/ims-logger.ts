import * as fs from 'node:fs';
import * as path from 'node:path';
import { ConsoleLogger, type LogLevel } from '@nestjs/common';
import type { LogFlags } from './log-flags.js';

export const LOG_FILE_NAME = 'ims.log';

/** The Nest levels enabled at a glog verbosity. */
export function levelsForVerbosity(verbosity: number): LogLevel[] {
  const levels: LogLevel[] = ['fatal', 'error', 'warn', 'log'];
  if (verbosity >= 1) levels.push('debug');
  if (verbosity >= 2) levels.push('verbose');
  return levels;
}

// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-9;]*m/g;

/**
 * Nest's console logger with glog's sinks: the console (stdout, or stderr only), and/or a log file.
 * Nest's own formatting is kept (text, or its JSON mode with -log_format=json); file lines are written
 * synchronously so the last lines before an exit are never lost.
 */
export class ImsLogger extends ConsoleLogger {
  private readonly fileFd: number | null;
  private readonly consoleMode: 'nest' | 'stderr' | 'errors-only';

  constructor(readonly flags: LogFlags) {
    const toFile = flags.logDir !== null && !flags.logToStderr;
    const json = flags.format === 'json';
    super({
      logLevels: levelsForVerbosity(flags.verbosity),
      colors: !json && !toFile && !flags.logToStderr && !!process.stdout.isTTY,
      json,
    });
    this.consoleMode =
      flags.logToStderr || (toFile && flags.alsoLogToStderr) ? 'stderr' : toFile ? 'errors-only' : 'nest';
    if (toFile) {
      fs.mkdirSync(flags.logDir!, { recursive: true });
      this.fileFd = fs.openSync(path.join(flags.logDir!, LOG_FILE_NAME), 'a');
    } else {
      this.fileFd = null;
    }
  }

  get logFile(): string | null {
    return this.fileFd === null ? null : path.join(this.flags.logDir!, LOG_FILE_NAME);
  }

  protected override printMessages(
    messages: unknown[],
    context?: string,
    logLevel?: LogLevel,
    writeStreamType?: 'stdout' | 'stderr',
    errorStack?: unknown,
    params?: Record<string, unknown>,
  ): void {
    const stream = this.consoleMode === 'stderr' ? 'stderr' : writeStreamType;
    super.printMessages(messages, context, logLevel, stream, errorStack, params);
  }

  protected override formatMessage(
    logLevel: LogLevel,
    message: unknown,
    pidMessage: string,
    formattedLogLevel: string,
    contextMessage: string,
    timestampDiff: string,
    params?: Record<string, unknown>,
  ): string {
    const line = super.formatMessage(
      logLevel,
      message,
      pidMessage,
      formattedLogLevel,
      contextMessage,
      timestampDiff,
      params,
    );
    if (this.fileFd !== null) this.toFile(line);
    // With a log file, only errors are also printed (to stderr), as glog's stderrthreshold does.
    if (this.consoleMode === 'errors-only' && logLevel !== 'error' && logLevel !== 'fatal') return '';
    return line;
  }

  /** JSON mode's printer (formatMessage is not used then): the same sinks as text lines. */
  protected override printAsJson(
    message: unknown,
    options: Parameters<ConsoleLogger['printAsJson']>[1],
  ): void {
    if (this.fileFd !== null)
      this.toFile(`${this.stringifyJsonLogObject(this.getJsonLogObject(message, options))}\n`);
    const level = options.logLevel;
    if (this.consoleMode === 'errors-only' && level !== 'error' && level !== 'fatal') return;
    super.printAsJson(message, options);
  }

  protected override printStackTrace(stack: string): void {
    if (!stack) return;
    if (this.fileFd !== null) this.toFile(`${stack}\n`);
    super.printStackTrace(stack);
  }

  private toFile(text: string): void {
    try {
      fs.writeSync(this.fileFd!, text.replace(ANSI, ''));
    } catch {
      // A full or vanished log folder must not take the server down; the console still works.
    }
  }
}
