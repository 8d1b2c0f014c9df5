// CUDA storage: one block of the addon's caching allocator, addressed by its device pointer.
import type { NativeAddon } from '../addon.js';
import { type DType, dtypeBytes } from '../../tensor/dtype.js';
import type { MemoryTag } from '../../tensor/memory.js';
import { Storage } from '../../tensor/storage.js';

export class CudaStorage extends Storage {
  readonly backendName = 'cuda';
  constructor(
    private readonly addon: NativeAddon,
    /** device address of element 0 (a new one after evict() and restore()) */
    public ptr: number,
    dtype: DType,
    numel: number,
    tag: MemoryTag,
  ) {
    super(dtype, numel, tag, 'cuda');
  }
  protected freeBlock(): void {
    this.addon.cudaFree(this.ptr);
  }
  protected allocBlock(): void {
    this.ptr = this.addon.cudaAlloc(this.bytes, false);
  }
}

/** A temporary device buffer for a kernel's partial results (counted as 'other'; zeroed on the stream when `zero`); release() it after the launch. */
export function scratchStorage(addon: NativeAddon, dtype: DType, numel: number, zero = false): CudaStorage {
  return new CudaStorage(addon, addon.cudaAlloc(numel * dtypeBytes(dtype), zero), dtype, numel, 'other');
}
