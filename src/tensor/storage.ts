// Storage = one reference-counted block of elements owned by a backend. Tensors are views of
// it; the last release frees the block at once (deterministic, never left to the GC).
import { type DType, dtypeBytes } from './dtype.js';
import { countAlloc, countFree, countRetag, type MemoryDevice, type MemoryTag } from './memory.js';

export abstract class Storage {
  private refs = 1;
  readonly bytes: number;

  constructor(
    readonly dtype: DType,
    readonly numel: number,
    private tagValue: MemoryTag,
    /** where the bytes live, for memory.stats(device); 'meta' holds none (tensor/meta.ts) and is not counted */
    readonly device: MemoryDevice | 'meta' = 'cpu',
  ) {
    this.bytes = numel * dtypeBytes(dtype);
    if (device !== 'meta') countAlloc(this.bytes, tagValue, device);
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
    if (this.device !== 'meta') countRetag(this.bytes, this.tagValue, t, this.device);
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
      if (this.device !== 'meta') countFree(this.bytes, this.tagValue, this.device);
      this.freeBlock();
    }
  }
}
