// The chaos suite's soak (npm run chaos:soak): every scenario of test/chaos with IMS_CHAOS_CYCLES fault
// cycles (default 5), first on a quiet machine, then with two CPU-burning processes (IMS_CHAOS_BUSY=0 or
// 1 runs only one of the two passes), one test file at a time. Prints one table row per fault: cycles
// run, acknowledged saves, lost, ids with two bodies, skipped ids, longest stretch without an ack.
// Usage: IMS_CHAOS_CYCLES=20 npm run chaos:soak [-- filter-substring...]
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const filters = process.argv.slice(2);
const files = readdirSync('dist/test/chaos')
  .filter((f) => f.endsWith('.test.js'))
  .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)))
  .map((f) => join('dist/test/chaos', f));
const cycles = process.env.IMS_CHAOS_CYCLES ?? '5';
const passes = process.env.IMS_CHAOS_BUSY ? [process.env.IMS_CHAOS_BUSY] : ['0', '1'];
const dir = mkdtempSync(join(tmpdir(), 'ims-soak-'));
const results = join(dir, 'results.jsonl');
let failed = false;
for (const busy of passes) {
  const r = spawnSync(
    process.execPath,
    ['--test', '--test-concurrency=1', '--test-reporter=spec', ...files],
    {
      stdio: 'inherit',
      env: { ...process.env, IMS_CHAOS_CYCLES: cycles, IMS_CHAOS_BUSY: busy, IMS_CHAOS_RESULTS: results },
    },
  );
  if (r.status !== 0) failed = true;
}
const rows = existsSync(results)
  ? readFileSync(results, 'utf8')
      .split('\n')
      .filter((l) => l.length > 0)
      .map((l) => JSON.parse(l))
  : [];
console.log(
  '\n| fault | CPU busy | cycles | acknowledged saves | lost | ids with two bodies | skipped ids | files identical | longest stretch without an ack |',
);
console.log('|---|---|---|---|---|---|---|---|---|');
for (const r of rows) {
  console.log(
    `| ${r.fault} | ${r.busy ? 'yes' : 'no'} | ${r.cycles} | ${r.acknowledged} | ${r.lost} | ${r.twoBodies} | ${r.skipped} | ${r.identical ? 'yes' : 'no'} | ${(r.longestGapMs / 1000).toFixed(1)} s |`,
  );
}
rmSync(dir, { recursive: true, force: true });
process.exit(failed ? 1 : 0);
