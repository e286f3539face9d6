/**
 * Bytes queued during one turn of the event loop, handed on as one write in the next: how both Go
 * transports' servers send their answers, and how the gorpc client (as Go's) sends its calls.
 */
export class WriteBatch {
  private out: Buffer[] = [];
  private scheduled = false;

  constructor(private readonly write: (data: Buffer) => void) {}

  push(...bytes: Buffer[]): void {
    this.out.push(...bytes);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  clear(): void {
    this.out = [];
  }

  private flush(): void {
    this.scheduled = false;
    if (this.out.length === 0) return;
    const data = this.out.length === 1 ? this.out[0] : Buffer.concat(this.out);
    this.out = [];
    this.write(data);
  }
}
