// Summarises a V8 .cpuprofile: self and inclusive time per function and time per area (ims, Nest,
// rxjs, Node internals, GC, idle). Usage: node bench/profile-summary.mjs FILE.cpuprofile [TOP]
import * as fs from 'node:fs';
import * as path from 'node:path';

function areaOf(frame) {
  const url = frame.url ?? '';
  const fn = frame.functionName;
  if (fn === '(idle)') return 'idle';
  if (fn === '(garbage collector)') return 'gc';
  if (fn === '(program)') return 'program (native, outside JS)';
  if (url.includes('node_modules/@nestjs/microservices')) return '@nestjs/microservices';
  if (url.includes('node_modules/@nestjs/')) return '@nestjs/core+common';
  if (url.includes('node_modules/rxjs')) return 'rxjs';
  if (url.includes('node_modules/class-validator') || url.includes('node_modules/class-transformer')) {
    return 'class-validator/transformer';
  }
  if (url.includes('node_modules/')) return 'other packages';
  if (url.includes('/dist/src/storage/') || url.includes('/dist/src/format/')) return 'ims storage+format';
  if (url.includes('/dist/src/')) return 'ims rpc/other';
  if (url.startsWith('node:') || url === '') return 'node internals + builtins';
  return 'other';
}

export function summarizeProfile(profile, top = 25) {
  const byId = new Map();
  const parent = new Map();
  for (const node of profile.nodes) {
    byId.set(node.id, node);
    for (const c of node.children ?? []) parent.set(c, node.id);
  }
  const keyOf = (f) => `${f.functionName || '(anonymous)'} ${path.basename(f.url || '')}:${f.lineNumber + 1}`;
  const self = new Map();
  const incl = new Map();
  const areas = new Map();
  let total = 0;
  const { samples, timeDeltas } = profile;
  for (let i = 0; i < samples.length; i++) {
    const dt = timeDeltas[i + 1] ?? 0;
    total += dt;
    const leaf = byId.get(samples[i]);
    const k = keyOf(leaf.callFrame);
    self.set(k, (self.get(k) ?? 0) + dt);
    const area = areaOf(leaf.callFrame);
    areas.set(area, (areas.get(area) ?? 0) + dt);
    const seen = new Set();
    for (let id = samples[i]; id !== undefined; id = parent.get(id)) {
      const key = keyOf(byId.get(id).callFrame);
      if (seen.has(key)) continue;
      seen.add(key);
      incl.set(key, (incl.get(key) ?? 0) + dt);
    }
  }
  const pct = (us) => Math.round((us / total) * 1000) / 10;
  const busy = total - (areas.get('idle') ?? 0);
  const list = (m) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([fn, us]) => ({ fn, pct: pct(us), pctOfBusy: Math.round((us / busy) * 1000) / 10 }));
  return {
    totalMs: Math.round(total / 1000),
    busyPct: pct(busy),
    areas: list(areas),
    self: list(self),
    inclusive: list(incl).filter((e) => !e.fn.startsWith('(root)')),
  };
}

if (process.argv[1] && import.meta.url === `file://${path.resolve(process.argv[1])}`) {
  const profile = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
  console.log(JSON.stringify(summarizeProfile(profile, Number(process.argv[3] ?? 25)), null, 2));
}
