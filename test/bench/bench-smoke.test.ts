/**
 * Smoke run of the benchmark (`node bench/run.mjs --quick`): every section runs against the real server
 * and writes figures. Not a benchmark itself: it only checks that each section produced positive numbers.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { REPO_ROOT, removeDir, tempDir } from '../support/fixtures.js';

type Figures = { opsPerSec: number; p50Ms: number; p99Ms: number };

function runBench(outDir: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, ['bench/run.mjs', '--quick', '--out', outDir], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    proc.stdout.on('data', (c: Buffer) => (output += c.toString()));
    proc.stderr.on('data', (c: Buffer) => (output += c.toString()));
    const timer = setTimeout(() => proc.kill('SIGKILL'), 170_000);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

function assertFigures(label: string, f: Figures | undefined): void {
  assert.ok(f, `${label} is missing`);
  assert.ok(f.opsPerSec > 0, `${label}: ops/s ${f.opsPerSec}`);
  assert.ok(f.p50Ms > 0 && f.p99Ms >= f.p50Ms, `${label}: p50 ${f.p50Ms} ms, p99 ${f.p99Ms} ms`);
}

describe('bench/run.mjs --quick', () => {
  const outDir = tempDir('ims-bench-smoke-');
  after(() => removeDir(outDir));

  it(
    'runs every section and writes JSON and markdown results with positive figures',
    { timeout: 180_000 },
    async () => {
      const { code, output } = await runBench(outDir);
      assert.equal(code, 0, output);
      const res = JSON.parse(fs.readFileSync(path.join(outDir, 'quick.json'), 'utf8'));
      const md = fs.readFileSync(path.join(outDir, 'quick.md'), 'utf8');
      assert.match(md, /SavePeerMessage/);
      assert.match(md, /SavePeerMessage over gorpc/);
      assert.match(res.gorpcClient, /GorpcClient/);
      assert.ok(res.machine.cpuCount > 0 && res.machine.node.startsWith('v'));
      for (const k of [1, 16, 64]) {
        for (const d of ['sync', 'interval']) {
          assertFigures(`saves ${d} ${k}`, res.saves[d][k]);
          assertFigures(`saves, one call per save, ${d} ${k}`, res.savesSingle[d][k]);
          assertFigures(`saves over gorpc ${d} ${k}`, res.savesGorpc[d][k]);
          assertFigures(`disk ceiling ${d} ${k}`, res.ceilings.disk[d][k]);
          assertFigures(`engine ${d} ${k}`, res.ceilings.engine[d][k]);
          assert.ok(res.ratios[`${d}_${k}`].ofDisk > 0 && res.ratios[`${d}_${k}`].ofTransport > 0);
        }
        assertFigures(`transport ceiling ${k}`, res.ceilings.transport[k]);
        assertFigures(`transport ceiling, one call per save, ${k}`, res.ceilings.transportSingle[k]);
      }
      assertFigures('replicated saves (min_insync_replicas=1, one slave)', res.replicated);
      assert.ok(res.replicated.ratioToStandalone > 0, 'replicated saves as a ratio to standalone');
      assert.match(md, /Replicated saves.* × standalone/);
      for (const s of ['full_1', 'full_64', 'tail_1', 'tail_64']) assertFigures(`sync ${s}`, res.sync[s]);
      assert.equal(res.sync.messagesPerFullSync, 100);
      for (const s of ['full_1', 'full_64', 'tail_1', 'tail_64']) {
        assertFigures(`sync ${s}, unchecked reads`, res.sync.unchecked[s]);
        const r = res.sync.checkedOfUnchecked[s];
        assert.ok(r.ofMedians > 0, `checked ÷ unchecked ${s}: ${JSON.stringify(r)}`);
      }
      assert.match(md, /checked ÷ unchecked/);
      assert.ok(res.rebuild.mbPerSec > 0 && res.rebuild.bytesScanned > 0 && res.rebuild.recordsScanned > 0);
      assert.equal(res.memory.users, 100_000);
      assert.ok(res.memory.rssMB > 0 && res.memory.heapUsedMB > 0 && res.memory.bytesPerUser > 0);
      assert.ok(res.framing.usPerMessage > 0);
      assert.equal(res.queues.rows.length, 2);
      for (const r of res.queues.rows) assert.ok(r.newCountUs > 0 && r.syncPageUs > 0, JSON.stringify(r));
      assert.ok(res.queues.largestOverSmallest.newCount > 0 && res.queues.largestOverSmallest.syncPage > 0);
      assertFigures('engine saves v2', res.queues.saves.v2);
      assertFigures('engine saves v4', res.queues.saves.v4);
      assert.ok(res.queues.saves.v4OverV2 > 0);
      assert.match(md, /v4 queues/);
      assert.equal(res.targets.length, 10);
    },
  );
});
