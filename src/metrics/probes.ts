/**
 * Measurement points inside the storage engine. The engine calls these at the places where the work
 * happens; the metrics module replaces them with Prometheus observations when the server runs. They stay
 * no-ops in the operator tools and unit tests, which then load no metrics library at all.
 */
export interface StorageProbes {
  /** An fdatasync of the write block returned: how long it took and how many waiting saves it released. */
  fsync(seconds: number, released: number): void;
  /** An fdatasync failed (storage then refuses writes until restarted). */
  fsyncFailed(): void;
  /** Both index files were saved. */
  indexSaved(seconds: number): void;
}

const noop = (): void => {};

export const storageProbes: StorageProbes = { fsync: noop, fsyncFailed: noop, indexSaved: noop };
