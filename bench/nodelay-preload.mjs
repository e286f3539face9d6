// What-if for the benchmark (--nodelay): turns Nagle's algorithm off on every TCP socket of the process,
// server side (accepted sockets) and client side, as a Nest socketClass calling setNoDelay(true) would.
import net from 'node:net';
import { syncBuiltinESMExports } from 'node:module';

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
