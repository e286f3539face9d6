/**
 * Fault injection preloaded into a server (`--import`): while the file named by IMS_TEST_FSYNC_HOLD
 * exists, every asynchronous fdatasync waits (its callback is held) until the file is removed. It makes
 * a master whose log end runs ahead of its durable end for as long as a test needs, which a real disk
 * shows only for milliseconds.
 */
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';

const flag = process.env.IMS_TEST_FSYNC_HOLD;
if (flag) {
  const fdatasync = fs.fdatasync;
  const held = (fd: number, callback: fs.NoParamCallback): void => {
    if (!fs.existsSync(flag)) return fdatasync(fd, callback);
    const timer = setInterval(() => {
      if (fs.existsSync(flag)) return;
      clearInterval(timer);
      fdatasync(fd, callback);
    }, 10);
  };
  fs.fdatasync = held as typeof fs.fdatasync;
  syncBuiltinESMExports();
}
