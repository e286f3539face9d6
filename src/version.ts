/** The version banner (Go printed the same five lines at start). */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface BuildInfo {
  version: string;
  buildTime: string;
  gitBranch: string;
  gitCommit: string;
}

export function buildInfo(): BuildInfo {
  const here = path.dirname(fileURLToPath(import.meta.url));
  try {
    return JSON.parse(fs.readFileSync(path.resolve(here, '../build-info.json'), 'utf8')) as BuildInfo;
  } catch {
    return { version: 'unknown', buildTime: 'unknown', gitBranch: 'unknown', gitCommit: 'unknown' };
  }
}

export function versionBanner(): string {
  const b = buildInfo();
  return [
    `Version:     ${b.version}`,
    `Built:       ${b.buildTime}`,
    `Node version: ${process.version}`,
    `Git branch:  ${b.gitBranch}`,
    `Git commit:  ${b.gitCommit}`,
  ].join('\n');
}
