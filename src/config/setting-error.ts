/**
 * A start-up failure caused by one setting: the message names the config key, its value and the cause,
 * so an operator knows which line of the config file to change (`rpc_listen=…: address already in use`).
 */
export class SettingError extends Error {
  constructor(
    readonly key: string,
    readonly value: string,
    readonly reason: string,
  ) {
    super(`${key}=${value}: ${reason}`);
    this.name = 'SettingError';
  }
}

const LISTEN_CAUSES: Record<string, string> = {
  EADDRINUSE: 'address already in use (another process listens on that port)',
  EADDRNOTAVAIL: 'address not available (no interface of this host has that address)',
  EACCES: 'permission denied (ports below 1024 need privileges)',
  ENOTFOUND: 'host name not found',
  EAI_AGAIN: 'host name could not be resolved',
};

/** Turns a listen() failure into a SettingError for `key`; other errors pass through unchanged. */
export function listenError(key: string, value: string, err: unknown): Error {
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code && LISTEN_CAUSES[code]) return new SettingError(key, value, `${LISTEN_CAUSES[code]}, ${code}`);
  if (code) return new SettingError(key, value, `cannot listen: ${(err as Error).message}`);
  return err as Error;
}

/** Runs a listen step and names `key` when it fails. */
export async function listening<T>(key: string, value: string, step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (err) {
    throw listenError(key, value, err);
  }
}
