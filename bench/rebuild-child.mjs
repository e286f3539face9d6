// Opens a data folder whose index files were deleted (so the index is rebuilt from every block) in a
// fresh process and prints the open report as JSON. The index is not saved, so the next run rebuilds too.
// Usage: node bench/rebuild-child.mjs DATA_DIR
import { distUrl } from './lib.mjs';

const { MessageStore } = await import(distUrl('src/storage/message-store.js'));
const root = process.argv[2];
const t0 = performance.now();
const store = MessageStore.open({ root });
const wallMs = performance.now() - t0;
const report = store.openReport;
await store.close({ saveIndex: false });
console.log(JSON.stringify({ ...report, wallMs }));
