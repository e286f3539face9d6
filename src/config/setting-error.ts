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

/** Binding is immediate (or a DNS look-up); past this a listener that never answered fails start-up. */
export const LISTEN_TIMEOUT_MS = 30_000;

/**
 * Runs a listen step and names `key` when it fails. Bounded in time: a step that never settles must
 * not leave the server half-started (the other listeners up, this one not).
 */
export async function listening<T>(
  key: string,
  value: string,
  step: () => Promise<T>,
  timeoutMs = LISTEN_TIMEOUT_MS,
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new SettingError(key, value, `the listener did not bind within ${timeoutMs} ms`)),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([step(), timeout]);
  } catch (err) {
    throw listenError(key, value, err);
  } finally {
    clearTimeout(timer);
  }
}
