// The long fuzzing run (issue 23): `npm run fuzz -- --minutes 30 [--seed N]`. Rounds of mutated inputs
// against every port of a real server (and a real slave from a hostile master) until the time is up;
// prints the inputs tried per port, the distinct failures, the worst /health/live answer and the peak RSS.
// Failing inputs are kept in test/fuzz/corpus/ (replayed by `npm test`).
import { runFuzz } from '../dist/test/fuzz/harness.js';

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const minutes = option('--minutes', 30);
const end = Date.now() + minutes * 60_000;
let seed = option('--seed', Date.now() % 1e9);
const total = {
  ports: {},
  failures: new Set(),
  worstHealthMs: 0,
  peakRssMB: 0,
  knownGaps: new Set(),
  rounds: 0,
};
while (Date.now() < end) {
  const r = await runFuzz({
    inputsPerPort: 3000,
    budgetMs: Math.min(60_000, Math.max(5000, (end - Date.now()) / 6)),
    seed: seed++,
    log: (l) => (l.startsWith('FAILURE') ? console.log(l) : undefined),
  });
  total.rounds++;
  for (const [p, s] of Object.entries(r.ports)) {
    total.ports[p] ??= { inputs: 0, failures: 0 };
    total.ports[p].inputs += s.inputs;
    total.ports[p].failures += s.failures;
  }
  r.distinctFailures.forEach((f) => total.failures.add(f));
  r.knownGaps.forEach((g) => total.knownGaps.add(g));
  total.worstHealthMs = Math.max(total.worstHealthMs, r.worstHealthMs);
  total.peakRssMB = Math.max(total.peakRssMB, r.peakRssMB);
  console.log(`round ${total.rounds} (seed ${seed - 1}): ${JSON.stringify(r.ports)}`);
}
console.log(`\nfuzzed for ${minutes} min, ${total.rounds} round(s)`);
for (const [p, s] of Object.entries(total.ports))
  console.log(`  ${p}: ${s.inputs} inputs, ${s.failures} failed`);
console.log(`distinct failures: ${total.failures.size}`);
for (const f of total.failures) console.log(`  - ${f}`);
for (const g of total.knownGaps) console.log(`known gap: ${g}`);
console.log(
  `worst /health/live: ${Math.round(total.worstHealthMs)} ms; peak RSS: ${Math.round(total.peakRssMB)} MB`,
);
process.exitCode = total.failures.size > 0 ? 1 : 0;
