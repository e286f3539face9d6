/**
 * Fault injection for the fsync-failure test, preloaded into a server (`--import`): while the file named
 * by IMS_TEST_FSYNC_FAULT exists, every asynchronous fdatasync fails with EIO. A disk that fails fsync on
 * demand cannot be had here without root, so this is the one edge the test fakes.
 */
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';

const flag = process.env.IMS_TEST_FSYNC_FAULT;
if (flag) {
  const fdatasync = fs.fdatasync;
  const faulty = (fd: number, callback: fs.NoParamCallback): void => {
    if (!fs.existsSync(flag)) return fdatasync(fd, callback);
    const err = Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO', errno: -5 });
    process.nextTick(() => callback(err));
  };
  fs.fdatasync = faulty as typeof fs.fdatasync;
  syncBuiltinESMExports();
}
