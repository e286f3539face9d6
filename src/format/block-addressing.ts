/**
 * How a message id maps to the block files: id = block number × block size + byte offset in that block
 * (a block's header is part of its offsets). Shared by the storage engine and the operator tools.
 */
import * as path from 'node:path';

export function blockFileName(blockNo: number): string {
  return `message_${blockNo}`;
}

export class BlockAddressing {
  constructor(
    readonly root: string,
    readonly blockSize: number,
  ) {}

  blockOf(id: number): number {
    return Math.floor(id / this.blockSize);
  }

  offsetOf(id: number): number {
    return id % this.blockSize;
  }

  idOf(blockNo: number, offset: number): number {
    return blockNo * this.blockSize + offset;
  }

  filePath(blockNo: number): string {
    return path.join(this.root, blockFileName(blockNo));
  }

  /** Where an id lives, for messages: `message_N offset X`. */
  describe(id: number): string {
    return `${blockFileName(this.blockOf(id))} offset ${this.offsetOf(id)}`;
  }
}
