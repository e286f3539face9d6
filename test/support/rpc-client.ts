/** RPC helpers for e2e tests: typed clients for a started server, an untyped caller for bad payloads, bodies. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ClientTCP } from '@nestjs/microservices';
import { firstValueFrom, timeout } from 'rxjs';
import { ImsClient } from '../../src/client/index.js';
import { encodeImBody } from '../../src/format/bodies.js';
import { after, before } from 'node:test';
import { removeDir } from './fixtures.js';
import { startServer, type ServerProcess } from './server-process.js';

export function clientFor(server: ServerProcess, timeoutMs = 10000): ImsClient {
  return new ImsClient({ host: '127.0.0.1', port: server.ports.rpc, timeoutMs });
}

export type RawResult = { ok: true; value: unknown } | { ok: false; message: string };

/** Sends any payload (also ones the typed client cannot express) on one Nest TCP connection. */
export class RawRpcClient {
  readonly proxy: ClientTCP;

  constructor(server: ServerProcess) {
    this.proxy = new ClientTCP({ host: '127.0.0.1', port: server.ports.rpc });
  }

  async call(pattern: string, payload: unknown, timeoutMs = 10000): Promise<RawResult> {
    try {
      const value = await firstValueFrom(this.proxy.send(pattern, payload).pipe(timeout(timeoutMs)));
      return { ok: true, value };
    } catch (err) {
      const message = typeof err === 'string' ? err : String((err as { message?: unknown }).message);
      return { ok: false, message };
    }
  }

  /** The local port of the current connection (to prove several calls shared it). */
  localPort(): number | undefined {
    return this.proxy.unwrap<import('node:net').Socket>().localPort;
  }

  close(): void {
    this.proxy.close();
  }
}

/** An IMMessage v1 body: sender, receiver, timestamp, msgid, then the text. */
export function imBody(
  sender: bigint | number,
  receiver: bigint | number,
  text: string,
  timestamp = 0,
): Buffer {
  return encodeImBody({
    sender: BigInt(sender),
    receiver: BigInt(receiver),
    timestamp,
    msgid: 0,
    content: Buffer.from(text),
  });
}

/** Total size of the block files of a data folder (what any write would grow). */
export function blockFilesSize(dataDir: string): number {
  return fs
    .readdirSync(dataDir)
    .filter((f) => /^message_\d+$/.test(f))
    .reduce((sum, f) => sum + fs.statSync(path.join(dataDir, f)).size, 0);
}

export { freePort as freePortFor } from './server-process.js';

/**
 * A server with 1 MiB blocks and a raw client, started before a describe block's tests and stopped
 * (its folder removed) after them. Read `server` and `rpc` inside the tests.
 */
export function rawServerFixture(): { server: ServerProcess; rpc: RawRpcClient } {
  const fixture = {} as { server: ServerProcess; rpc: RawRpcClient };
  before(async () => {
    fixture.server = await startServer({ config: { block_size: 1048576 } });
    fixture.rpc = new RawRpcClient(fixture.server);
  });
  after(async () => {
    fixture.rpc?.close();
    await fixture.server?.stop();
    if (fixture.server) removeDir(path.dirname(fixture.server.dataDir));
  });
  return fixture;
}
