// Preloaded with --import into the sync section's third server: every read computes its record's CRC,
// with no recheck window (see RECHECK_EPOCH_MS in src/storage/record-checksums.ts). Its figures are
// what a read of a record not verified recently costs: a first read, or one after the window.
const { ChecksumSidecars } = await import(
  new URL('../dist/src/storage/record-checksums.js', import.meta.url).href
);
ChecksumSidecars.recheckEpochMs = 0;
