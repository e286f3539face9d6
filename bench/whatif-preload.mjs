// What-if changes for the benchmark (--whatif LIST), preloaded with --import into the server, the echo
// server and the client. None is in ims itself; each shows what a change on the Nest transport would give.
//   nodelay  Nagle's algorithm off on every TCP socket (a socketClass calling setNoDelay(true))
//   route    no JSON.parse of plain string patterns (Nest parses every pattern, and a name like
//            "SavePeerMessage" throws a SyntaxError per request); a custom ServerTCP strategy could do it
//   cork     replies (and requests) written in the same tick go out in one write (socket.cork/uncork)
import net from 'node:net';
import { syncBuiltinESMExports } from 'node:module';
import { Server } from '@nestjs/microservices';
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

if (wanted.has('route')) {
  const getRoute = Server.prototype.getRouteFromPattern;
  Server.prototype.getRouteFromPattern = function (pattern) {
    if (typeof pattern === 'string' && !/^\s*[[{"]/.test(pattern)) return this.normalizePattern(pattern);
    return getRoute.call(this, pattern);
  };
}

if (wanted.has('cork')) {
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
