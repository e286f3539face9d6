/** The few logging calls the engine makes; Nest's Logger satisfies it, tests may pass a silent one. */
export interface StorageLogger {
  log(message: string): void;
  warn(message: string): void;
  error(message: string): void;
  debug?(message: string): void;
}

export const silentLogger: StorageLogger = {
  log: () => undefined,
  warn: () => undefined,
  error: () => undefined,
};
