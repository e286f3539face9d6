// Stamps dist/build-info.json with what the version banner prints (version, build time, git branch/commit).
import { execSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';

const git = (args) => {
  try {
    return (
      execSync(`git ${args}`, { stdio: ['ignore', 'pipe', 'ignore'] })
        .toString()
        .trim() || 'unknown'
    );
  } catch {
    return 'unknown';
  }
};
const pkg = JSON.parse(readFileSync('package.json', 'utf8'));
mkdirSync('dist', { recursive: true });
writeFileSync(
  'dist/build-info.json',
  JSON.stringify(
    {
      version: pkg.version,
      buildTime: new Date().toISOString(),
      gitBranch: git('rev-parse --abbrev-ref HEAD'),
      gitCommit: git('rev-parse HEAD'),
    },
    null,
    2,
  ) + '\n',
);
