/** The part of fs-native-extensions (a CommonJS addon without typings) that ims uses. */
declare module 'fs-native-extensions' {
  interface LockOptions {
    /** A shared (read) lock instead of an exclusive (write) one. */
    shared?: boolean;
  }
  /**
   * Whole-file lock when offset and length are left out; false when another open file description holds
   * a conflicting lock. On Linux an OFD lock (fcntl F_OFD_SETLK), on macOS flock(2).
   */
  export function tryLock(fd: number, options?: LockOptions): boolean;
  export function unlock(fd: number): void;
  const fsx: { tryLock: typeof tryLock; unlock: typeof unlock };
  export default fsx;
}
