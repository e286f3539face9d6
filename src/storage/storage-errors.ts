/** Errors of the storage engine. Each names what was wrong and where. */

/** A record that cannot be read: a dangling id, bad framing, or a body that does not parse. */
export class CorruptRecordError extends Error {
  constructor(
    readonly file: string,
    readonly offset: number,
    readonly reason: string,
  ) {
    super(`${file} offset ${offset}: ${reason}`);
    this.name = 'CorruptRecordError';
  }
}

/** The data folder cannot be opened safely as it is (an operator has to look at it). */
export class StorageOpenError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StorageOpenError';
  }
}

/** A write or fsync failed. After an fsync failure the store refuses writes until restarted. */
export class StorageWriteError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StorageWriteError';
  }
}

/** A request the engine refuses before touching the disk (bad input). */
export class StorageInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StorageInputError';
  }
}
