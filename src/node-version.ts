/**
 * The oldest Node this server supports (package.json `engines.node`, checked equal by a test). Imported
 * first by main.ts, so an older Node stops with one line instead of a failure somewhere later.
 */
export const MIN_NODE = '20.19.0';

/** Why `version` (`process.version`, e.g. `v20.18.1`) cannot run ims, or null when it can. */
export function nodeVersionProblem(version: string): string | null {
  const have = /^v?(\d+)\.(\d+)\.(\d+)/.exec(version)?.slice(1).map(Number);
  const need = MIN_NODE.split('.').map(Number);
  if (!have) return `ims cannot tell the Node version from "${version}"`;
  for (let i = 0; i < 3; i++) {
    if (have[i] > need[i]) return null;
    if (have[i] < need[i]) return `ims needs Node ${MIN_NODE} or newer; this is Node ${version}`;
  }
  return null;
}

const problem = nodeVersionProblem(process.version);
if (problem) {
  console.error(problem);
  process.exit(2);
}
