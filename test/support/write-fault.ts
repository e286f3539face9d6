/**
 * Fault injection preloaded into a server (`--import`): while the file named by IMS_TEST_ENOSPC exists,
 * every fs.writeSync fails with ENOSPC, as on a full disk (a real full disk needs a mount, i.e. root).
 */
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';

const flag = process.env.IMS_TEST_ENOSPC;
if (flag) {
  const writeSync = fs.writeSync;
  fs.writeSync = ((...args: Parameters<typeof fs.writeSync>) => {
    if (fs.existsSync(flag)) {
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), {
        code: 'ENOSPC',
        errno: -28,
      });
    }
    return (writeSync as (...a: unknown[]) => number)(...args);
  }) as typeof fs.writeSync;
  syncBuiltinESMExports();
}
