// Loads a data folder's peer index in a fresh process and prints memory use after a full GC.
// Usage: node --expose-gc bench/memory-child.mjs DATA_DIR
import { distUrl } from './lib.mjs';

const { MessageStore } = await import(distUrl('src/storage/message-store.js'));
if (typeof globalThis.gc !== 'function') throw new Error('run with --expose-gc');
const root = process.argv[2];
const fullGc = () => {
  for (let i = 0; i < 3; i++) globalThis.gc();
};
fullGc();
const before = process.memoryUsage();
const t0 = performance.now();
const store = MessageStore.open({ root, lock: false });
const loadMs = performance.now() - t0;
fullGc();
// Let freed pages of the file buffer go back to the OS before reading RSS.
await new Promise((r) => setTimeout(r, 200));
fullGc();
const after = process.memoryUsage();
const report = store.openReport;
const out = {
  users: store.peerCount,
  index: report.index,
  loadMs,
  before,
  after,
  maxRssBytes: process.resourceUsage().maxRSS * 1024,
  indexBytes: store.indexBytes,
};
await store.close({ saveIndex: false });
console.log(JSON.stringify(out));
