// Storage = one reference-counted block of elements owned by a backend. Tensors are views of
// it; the last release frees the block at once (deterministic, never left to the GC).
import { type DType, dtypeBytes } from './dtype.js';
import { countAlloc, countFree, countRetag, type MemoryDevice, type MemoryTag } from './memory.js';

export abstract class Storage {
  private refs = 1;
  readonly bytes: number;
  /** whether memory.stats counts the bytes (not for 'meta', nor for another process's memory) */
  private readonly counted: boolean;

  constructor(
    readonly dtype: DType,
    readonly numel: number,
    private tagValue: MemoryTag,
    /** where the bytes live, for memory.stats(device); 'meta' holds none (tensor/meta.ts) and is not counted */
    readonly device: MemoryDevice | 'meta' = 'cpu',
    /** bytes another process allocated (a peer's part of shared memory, src/dist): readable here, not counted as this process's */
    borrowed = false,
  ) {
    this.bytes = numel * dtypeBytes(dtype);
    this.counted = device !== 'meta' && !borrowed;
    if (this.counted) countAlloc(this.bytes, tagValue, device as MemoryDevice);
  }

  /** Name of the backend that owns the block. */
  abstract readonly backendName: string;
  /** Frees the backend's block; called once, when the last reference goes. */
  protected abstract freeBlock(): void;

  get tag(): MemoryTag {
    return this.tagValue;
  }
  set tag(t: MemoryTag) {
    if (t === this.tagValue || this.released) return;
    if (this.counted) countRetag(this.bytes, this.tagValue, t, this.device as MemoryDevice);
    this.tagValue = t;
  }

  get released(): boolean {
    return this.refs === 0;
  }
  get refCount(): number {
    return this.refs;
  }

  retain(): this {
    if (this.refs === 0) throw new Error('storage was already released (tensor used after dispose)');
    this.refs++;
    return this;
  }

  release(): void {
    if (this.refs === 0) return;
    if (--this.refs === 0) {
      if (this.counted) countFree(this.bytes, this.tagValue, this.device as MemoryDevice);
      this.freeBlock();
    }
  }
}
