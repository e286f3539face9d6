/**
 * The HTTP part of Go's net/rpc over HTTP (`rpc.DialHTTP` / `rpc.HandleHTTP`): the client sends
 * `CONNECT /_goRPC_ HTTP/1.0` and a blank line; the server answers `HTTP/1.0 200 Connected to Go RPC`
 * and a blank line, and from then on the connection carries gob. Anything else gets the answer Go's
 * http server and its DefaultServeMux would give (405 for another method on the RPC path, 404 for another
 * path, 400 for what is not an HTTP request), after which ims closes the connection.
 *
 * Pure: bytes in, a decision out.
 */

/** The path Go's rpc.HandleHTTP serves (rpc.DefaultRPCPath). */
export const RPC_PATH = '/_goRPC_';

/** What Go's server writes once the CONNECT is accepted; the gob stream follows at once. */
export const CONNECTED = Buffer.from('HTTP/1.0 200 Connected to Go RPC\n\n', 'latin1');

export type ConnectOutcome =
  /** The request head has not ended yet. */
  | { kind: 'incomplete' }
  /** Accepted; `rest` is whatever the client sent after the head (the start of its gob stream). */
  | { kind: 'connected'; rest: Buffer }
  /** Refused: send `response`, then close; `reason` is for the log line. */
  | { kind: 'refused'; response: Buffer; reason: string };

const TEXT_PLAIN = 'Content-Type: text/plain; charset=utf-8';

/** A complete response with a body, in the request's HTTP version, that closes the connection. */
function answer(version: string, status: string, body: string, extra: string[] = []): Buffer {
  const head = [
    `${version} ${status}`,
    TEXT_PLAIN,
    ...extra,
    `Content-Length: ${Buffer.byteLength(body)}`,
    'Connection: close',
  ];
  return Buffer.from(`${head.join('\r\n')}\r\n\r\n${body}`, 'latin1');
}

/** Go's reply to a request it cannot parse: always HTTP/1.1, no length, then the connection closes. */
const badRequest = (detail?: string): Buffer =>
  Buffer.from(
    `HTTP/1.1 400 Bad Request\r\n${TEXT_PLAIN}\r\nConnection: close\r\n\r\n400 Bad Request` +
      (detail ? `: ${detail}` : ''),
    'latin1',
  );

/** Where the head ends (after its blank line) in `buf`; Go accepts bare LF line ends as its client sends. */
function headEnd(buf: Buffer): number {
  for (let i = buf.indexOf(0x0a); i >= 0; i = buf.indexOf(0x0a, i + 1)) {
    if (buf[i + 1] === 0x0a) return i + 2;
    if (buf[i + 1] === 0x0d && buf[i + 2] === 0x0a) return i + 3;
  }
  return -1;
}

/**
 * Reads a request head from the bytes received so far. `maxHead` bounds it: a longer head is refused
 * (Go: 431) rather than buffered.
 */
export function readConnectRequest(buf: Buffer, maxHead: number): ConnectOutcome {
  const end = headEnd(buf);
  if (end < 0) {
    if (buf.length > maxHead)
      return {
        kind: 'refused',
        response: Buffer.from(
          `HTTP/1.1 431 Request Header Fields Too Large\r\n${TEXT_PLAIN}\r\nConnection: close\r\n\r\n` +
            '431 Request Header Fields Too Large',
          'latin1',
        ),
        reason: `request head longer than ${maxHead} bytes; answered 431`,
      };
    return { kind: 'incomplete' };
  }
  if (end > maxHead + 2)
    return {
      kind: 'refused',
      response: badRequest(),
      reason: `request head longer than ${maxHead} bytes; answered 400`,
    };
  const lines = buf
    .toString('latin1', 0, end)
    .split('\n')
    .map((l) => l.replace(/\r$/, ''));
  const requestLine = lines[0];
  const shown = JSON.stringify(requestLine.length > 80 ? `${requestLine.slice(0, 80)}…` : requestLine);
  // "METHOD URI HTTP/x.y", split at the first two spaces as Go does.
  const m = /^([^ ]+) ([^ ]+) (HTTP\/(\d)\.(\d))$/.exec(requestLine);
  if (!m)
    return { kind: 'refused', response: badRequest(), reason: `not an HTTP request: ${shown}; answered 400` };
  const [, method, uri, version, major] = m;
  if (major !== '1')
    return {
      kind: 'refused',
      response: badRequest(),
      reason: `unsupported HTTP version in ${shown}; answered 400`,
    };
  const headers = lines.slice(1).filter((l) => l !== '');
  if (headers.some((h) => !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+:/.test(h)))
    return {
      kind: 'refused',
      response: badRequest(),
      reason: `malformed header line after ${shown}; answered 400`,
    };
  if (version === 'HTTP/1.1' && !headers.some((h) => /^host:/i.test(h)))
    return {
      kind: 'refused',
      response: badRequest('missing required Host header'),
      reason: `HTTP/1.1 request without a Host header: ${shown}; answered 400`,
    };
  const path = uri.split('?')[0];
  if (path !== RPC_PATH)
    return {
      kind: 'refused',
      response: answer(version, '404 Not Found', '404 page not found\n', ['X-Content-Type-Options: nosniff']),
      reason: `${shown} is not for ${RPC_PATH}; answered 404`,
    };
  if (method !== 'CONNECT')
    return {
      kind: 'refused',
      response: answer(version, '405 Method Not Allowed', '405 must CONNECT\n'),
      reason: `${shown} is not a CONNECT; answered 405`,
    };
  return { kind: 'connected', rest: buf.subarray(end) };
}
