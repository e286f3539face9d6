// What-if changes for the benchmark (--whatif LIST), preloaded with --import into the server, the echo
// server and the client. None is in ims itself; each shows what a change on the Nest transport would give.
//   nodelay  Nagle's algorithm off on every TCP socket (a socketClass calling setNoDelay(true))
//   cork     replies (and requests) written in the same tick go out in one write (socket.cork/uncork)
//   batchwrite  one file write per group commit instead of one per save (see below)
//   fsyncgap, fsyncgap1ms  a pause before each group fdatasync (see below)
//   fsyncstats  logs fdatasyncs per second, their mean time and the event loop's utilisation
import net from 'node:net';
import { syncBuiltinESMExports } from 'node:module';
import { JsonSocket } from '@nestjs/microservices/helpers/json-socket.js';

const wanted = new Set((process.env.IMS_BENCH_WHATIF ?? '').split(',').filter(Boolean));

if (wanted.has('nodelay')) {
  const createServer = net.createServer;
  net.createServer = function (options, listener) {
    if (typeof options === 'function' || options === undefined)
      return createServer.call(this, { noDelay: true }, options);
    return createServer.call(this, { ...options, noDelay: true }, listener);
  };
  const connect = net.Socket.prototype.connect;
  net.Socket.prototype.connect = function (...args) {
    this.once('connect', () => this.setNoDelay(true));
    return connect.apply(this, args);
  };
  syncBuiltinESMExports();
}

if (wanted.has('cork')) {
  // Kept to be called as handleSend.call(this, …) from the patched method, so `this` is never lost.
  // oxlint-disable-next-line typescript/unbound-method
  const handleSend = JsonSocket.prototype.handleSend;
  JsonSocket.prototype.handleSend = function (message, callback) {
    if (!this.benchCorked) {
      this.benchCorked = true;
      this.socket.cork();
      process.nextTick(() => {
        this.benchCorked = false;
        this.socket.uncork();
      });
    }
    return handleSend.call(this, message, callback);
  };
}

// batchwrite: a save only stages its records; the group-commit loop writes everything staged with one
// write before its fdatasync (reads of staged ids write first). Measurement only: it ignores the
// failure isolation of MessageStore.write and the process-crash durability of durability=interval.
if (wanted.has('batchwrite')) {
  const { MessageStore } = await import(
    new URL('../dist/src/storage/message-store.js', import.meta.url).href
  );
  const { BlockFiles } = await import(new URL('../dist/src/storage/block-files.js', import.meta.url).href);
  MessageStore.prototype.write = function (stage) {
    try {
      return stage();
    } catch (err) {
      this.files.discardStaged();
      throw err;
    }
  };
  const read = BlockFiles.prototype.read;
  BlockFiles.prototype.read = function (id) {
    this.commit();
    return read.call(this, id);
  };
}

// fsyncgap: the group-commit loop waits a moment before each fdatasync (setImmediate, or 1 ms with
// fsyncgap1ms) so that more saves join the group: fewer fdatasyncs, each costing CPU, for a little latency.
if (wanted.has('fsyncgap') || wanted.has('fsyncgap1ms')) {
  const { BlockFiles } = await import(new URL('../dist/src/storage/block-files.js', import.meta.url).href);
  const { StorageWriteError } = await import(
    new URL('../dist/src/storage/storage-errors.js', import.meta.url).href
  );
  const fs = await import('node:fs');
  const gap = wanted.has('fsyncgap1ms')
    ? () => new Promise((resolve) => setTimeout(resolve, 1))
    : () => new Promise((resolve) => setImmediate(resolve));
  BlockFiles.prototype.syncLoop = async function () {
    try {
      while (this.waiters.length > 0 && !this.syncFailure) {
        await gap();
        this.commit();
        const target = this.nextId;
        const fd = this.writeFd;
        await new Promise((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve())));
        this.lastSyncAt = Date.now();
        if (target > this.durableEnd) this.durableEnd = target;
        const pending = [];
        for (const w of this.waiters) {
          if (w.id <= this.durableEnd) w.resolve();
          else pending.push(w);
        }
        this.waiters = pending;
      }
    } catch (err) {
      this.fail(new StorageWriteError('fdatasync failed', { cause: err }));
    } finally {
      this.syncInFlight = null;
      this.closeRetiredIfIdle();
    }
  };
}

// fsyncstats (diagnosis): logs fdatasync count, mean duration and saves-per-second once a second.
if (wanted.has('fsyncstats')) {
  const fsm = (await import('node:fs')).default;
  const orig = fsm.fdatasync;
  let n = 0;
  let total = 0;
  let max = 0;
  fsm.fdatasync = function (fd, cb) {
    const t0 = process.hrtime.bigint();
    n++;
    return orig.call(this, fd, (err) => {
      const d = Number(process.hrtime.bigint() - t0) / 1e3;
      total += d;
      if (d > max) max = d;
      cb(err);
    });
  };
  syncBuiltinESMExports();
  const { performance } = await import('node:perf_hooks');
  let elu = performance.eventLoopUtilization();
  setInterval(() => {
    const now = performance.eventLoopUtilization();
    const u = performance.eventLoopUtilization(now, elu).utilization;
    elu = now;
    if (n)
      process.stderr.write(
        `fsyncstats ${n}/s mean ${(total / n).toFixed(0)}us max ${max.toFixed(0)}us loop ${(u * 100).toFixed(0)}%\n`,
      );
    n = 0;
    total = 0;
    max = 0;
  }, 1000).unref();
}
