/**
 * A real etcd for the cluster tests: the `etcd` binary (scripts/ensure-etcd.mjs makes sure there is
 * one) on loopback ports with a temporary data folder, started and stopped by the test.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { removeDir, tempDir } from './fixtures.js';
import { freePort } from './server-process.js';
import { waitFor } from './wait.js';

export class EtcdProcess {
  private constructor(
    public proc: ChildProcess,
    readonly dataDir: string,
    readonly clientPort: number,
    readonly output: string[],
    private readonly args: string[],
  ) {}

  /** host:port for ims's etcd_endpoints. */
  get endpoint(): string {
    return `127.0.0.1:${this.clientPort}`;
  }

  get exited(): boolean {
    return this.proc.exitCode !== null || this.proc.signalCode !== null;
  }

  /**
   * Starts etcd. etcd cannot report a port it was given as 0, so free ports are picked; when one was
   * taken in the meantime etcd exits at once and the start is tried again with new ports.
   */
  static async start(): Promise<EtcdProcess> {
    for (let attempt = 1; ; attempt++) {
      const dataDir = tempDir('ims-etcd-');
      const [client, peer] = [await freePort(), await freePort()];
      const output: string[] = [];
      const args = [
        '--name=ims-test',
        `--data-dir=${path.join(dataDir, 'etcd')}`,
        `--listen-client-urls=http://127.0.0.1:${client}`,
        `--advertise-client-urls=http://127.0.0.1:${client}`,
        `--listen-peer-urls=http://127.0.0.1:${peer}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${peer}`,
        `--initial-cluster=ims-test=http://127.0.0.1:${peer}`,
        '--logger=zap',
        '--log-level=warn',
      ];
      const etcd = new EtcdProcess(EtcdProcess.spawn(args, output), dataDir, client, output, args);
      try {
        await etcd.healthy();
        return etcd;
      } catch (err) {
        await etcd.stop();
        const inUse = output.join('').includes('address already in use');
        if (!inUse || attempt >= 5) throw err;
      }
    }
  }

  private static spawn(args: string[], output: string[]): ChildProcess {
    const proc = spawn(process.env.IMS_ETCD_BIN ?? 'etcd', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    proc.stdout?.on('data', (c: Buffer) => output.push(c.toString()));
    proc.stderr?.on('data', (c: Buffer) => output.push(c.toString()));
    return proc;
  }

  private async healthy(): Promise<void> {
    await waitFor(
      async () => {
        if (this.exited) throw new Error(`etcd exited: ${this.output.join('')}`);
        const res = await fetch(`http://127.0.0.1:${this.clientPort}/health`);
        return res.ok && ((await res.json()) as { health: string }).health === 'true';
      },
      { what: `etcd healthy on 127.0.0.1:${this.clientPort}`, timeoutMs: 15000, intervalMs: 50 },
    );
  }

  /** Starts a halted etcd again on the same ports and data. */
  async resume(): Promise<void> {
    if (!this.exited) return;
    this.proc = EtcdProcess.spawn(this.args, this.output);
    await this.healthy();
  }

  /** Stops etcd (SIGTERM, then SIGKILL) and removes its data. */
  async stop(): Promise<void> {
    await this.halt();
    removeDir(this.dataDir);
  }

  /** Stops etcd but keeps its data, so that `resume` brings the same cluster back. */
  async halt(): Promise<void> {
    if (this.exited) return;
    const gone = new Promise((r) => this.proc.once('exit', r));
    this.proc.kill('SIGTERM');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 5000);
    await gone;
    clearTimeout(timer);
  }
}
