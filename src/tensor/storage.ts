// Storage = one reference-counted block of elements owned by a backend. Tensors are views of
// it; the last release frees the block at once (deterministic, never left to the GC).
import { type DType, dtypeBytes } from './dtype.js';
import { countAlloc, countFree, countRetag, type MemoryDevice, type MemoryTag } from './memory.js';

export abstract class Storage {
  private refs = 1;
  private evictedNow = false;
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
  /** Frees the backend's block: when the last reference goes, or on evict(). */
  protected abstract freeBlock(): void;
  /** A new block of `bytes` (uninitialised) in place of the freed one: restore(). */
  protected abstract allocBlock(): void;

  get tag(): MemoryTag {
    return this.tagValue;
  }
  set tag(t: MemoryTag) {
    if (t === this.tagValue || this.released) return;
    if (this.counted && !this.evictedNow) countRetag(this.bytes, this.tagValue, t, this.device as MemoryDevice);
    this.tagValue = t;
  }

  get released(): boolean {
    return this.refs === 0;
  }
  get refCount(): number {
    return this.refs;
  }

  /** True between evict() and restore(): the storage is alive but holds no bytes. */
  get evicted(): boolean {
    return this.evictedNow;
  }

  /**
   * Frees the bytes but keeps the storage and every view of it (PyTorch's resize_(0) of a
   * parameter's storage): ZeRO-3 drops a gathered layer between its forward and its backward while
   * the tape's saved views still point here. Ops refuse the views until restore().
   */
  evict(): void {
    if (this.refs === 0 || this.evictedNow) return;
    if (!this.counted) throw new Error(`storage: only bytes this process owns can be evicted (this one is ${this.device === 'meta' ? 'a meta tensor\'s' : 'another process\'s'})`);
    this.freeBlock();
    this.evictedNow = true;
    countFree(this.bytes, this.tagValue, this.device as MemoryDevice);
  }

  /** Gives an evicted storage a new block of the same size, uninitialised (the caller refills it). */
  restore(): void {
    if (this.refs === 0) throw new Error('storage: restore() of a released storage');
    if (!this.evictedNow) return;
    this.allocBlock();
    this.evictedNow = false;
    countAlloc(this.bytes, this.tagValue, this.device as MemoryDevice);
  }

  retain(): this {
    if (this.refs === 0) throw new Error('storage was already released (tensor used after dispose)');
    this.refs++;
    return this;
  }

  release(): void {
    if (this.refs === 0) return;
    if (--this.refs === 0) {
      if (this.evictedNow) return; // its block went at evict()
      if (this.counted) countFree(this.bytes, this.tagValue, this.device as MemoryDevice);
      this.freeBlock();
    }
  }
}
