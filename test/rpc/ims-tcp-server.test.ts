import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ImsTcpServer } from '../../src/rpc/ims-tcp.server.js';

describe('ImsTcpServer routing', () => {
  it('routes a registered plain name without JSON.parse, and still finds object patterns', () => {
    const server = new ImsTcpServer({ host: '127.0.0.1', port: 0 });
    const byName = Object.assign(async () => 'name', {});
    const byObject = Object.assign(async () => 'object', {});
    server.addHandler('SavePeerMessage', byName);
    server.addHandler({ cmd: 'sum' }, byObject);

    const parse = JSON.parse;
    let parses = 0;
    JSON.parse = ((text: string, reviver?: Parameters<typeof parse>[1]) => {
      parses++;
      return parse(text, reviver);
    }) as typeof JSON.parse;
    try {
      assert.equal(server.getHandlerByPattern('SavePeerMessage'), byName);
      assert.equal(parses, 0, 'a plain registered name was JSON-parsed');
      assert.equal(server.getHandlerByPattern('{"cmd":"sum"}'), byObject);
      assert.equal(server.getHandlerByPattern('NoSuchPattern'), null);
      assert.ok(parses >= 1, 'an unknown name takes the stock path');
    } finally {
      JSON.parse = parse;
    }
  });
});
