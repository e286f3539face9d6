// Preloaded with --import into the server that the sync section measures beside the normal one: reads
// skip the checksum check (every record counts as having no checksum, as in a block Go wrote). The two
// servers serve copies of the same folder, so the ratio of their figures is the cost of checked reads.
const { ChecksumSidecars } = await import(
  new URL('../dist/src/storage/record-checksums.js', import.meta.url).href
);
ChecksumSidecars.prototype.expected = () => -1;
