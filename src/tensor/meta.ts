// Meta tensors (PyTorch's device='meta'): a shape and a dtype with no storage behind them. A model
// built with { backend: 'meta' } has only these as parameters, so loading can allocate each one
// once, in its final dtype, as the checkpoint is read (models/load.ts), instead of initialising a
// float32 model and overwriting it. Ops refuse them (Tensor.assertLive), naming the parameter.
import type { DType } from './dtype.js';
import { Layout, type Shape, numel } from './layout.js';
import { Storage } from './storage.js';
import { Tensor } from './tensor.js';

/** Holds no bytes: not counted by memory.stats(), nothing to free. */
class MetaStorage extends Storage {
  readonly backendName = 'meta';
  constructor(dtype: DType, n: number) {
    super(dtype, n, 'param', 'meta');
  }
  protected freeBlock(): void {}
  protected allocBlock(): void {}
}

/**
 * A tensor of this shape and dtype with no storage (what lazy construction makes).
 * @example const w = metaTensor([4096, 4096], 'bfloat16') // 32 MiB described, 0 bytes held
 */
export function metaTensor(shape: Shape, dtype: DType): Tensor {
  for (const s of shape)
    if (!Number.isInteger(s) || s < 0) throw new Error(`metaTensor: invalid shape [${shape.join(', ')}]`);
  return new Tensor(new MetaStorage(dtype, numel(shape)), new Layout([...shape]));
}

/** True for a tensor without storage (built lazily and not loaded yet). */
export const isMeta = (t: Tensor): boolean => t.storage.device === 'meta';
