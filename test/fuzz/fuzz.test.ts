/**
 * The fuzzing suite's short run (a few hundred to a few thousand inputs per port, under a minute) and
 * the replay of every input that ever failed (test/fuzz/corpus). The long run: `npm run fuzz`.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { corpus, runFuzz } from './harness.js';

describe('fuzzing every port with mutated captured conversations (short run)', () => {
  it(
    'the server survives: alive, others served, /health/live in time, RSS bounded, folders verify',
    { timeout: 240_000 },
    async (t) => {
      const replay = corpus().map((c) => ({ port: c.port, bytes: Buffer.from(c.hex, 'hex') }));
      const r = await runFuzz({
        inputsPerPort: Number(process.env.IMS_FUZZ_INPUTS ?? 2000),
        budgetMs: 6000,
        seed: Number(process.env.IMS_FUZZ_SEED ?? 20261208),
        replay,
      });
      const summary = JSON.stringify(r, null, 1);
      for (const [port, s] of Object.entries(r.ports)) t.diagnostic(`${port}: ${s.inputs} inputs`);
      t.diagnostic(
        `worst /health/live ${Math.round(r.worstHealthMs)} ms, peak RSS ${Math.round(r.peakRssMB)} MB`,
      );
      for (const g of r.knownGaps) t.diagnostic(`known gap: ${g}`);
      assert.ok(replay.length > 0, 'the corpus is replayed');
      for (const [port, s] of Object.entries(r.ports))
        assert.ok(s.inputs > 0, `${port} got no inputs: ${summary}`);
      assert.deepEqual(r.distinctFailures, [], summary);
      assert.ok(r.verified, summary);
    },
  );
});
