// A preallocated per-layer key/value cache [B, Hkv, maxLen, hd]: passed explicitly into the
// model's forward, never hidden module state. New keys are copied in place; attention reads
// the filled prefix as a view. Without an explicit dtype each layer's buffers are made at its
// first update in the dtype of its keys (a bf16 model, or autocast, caches bf16), and made again
// when a reset cache is refilled with keys of another dtype.
import { empty } from '../ops/dispatch.js';
import { to } from '../ops/elementwise.js';
import { copy_ } from '../ops/inplace.js';
import { narrow } from '../ops/view.js';
import type { DType } from '../tensor/dtype.js';
import { shapeStr } from '../tensor/layout.js';
import { keep } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';

/**
 * Attention over cached keys kept in another dtype than the activations (a KVCache made with
 * `dtype`: bf16 keys for float32 decoding): q meets them in their dtype, the output comes back in q's.
 */
export function attendInCacheDtype(q: Tensor, k: Tensor, attend: (q: Tensor) => Tensor): Tensor {
  if (q.dtype === k.dtype) return attend(q);
  return to(attend(to(q, k.dtype)), q.dtype);
}

export class KVCache {
  readonly keys: (Tensor | null)[];
  readonly values: (Tensor | null)[];
  /** tokens already stored (the position the next token is written at) */
  length = 0;
  private readonly dtype: DType | undefined;

  constructor(
    readonly numLayers: number,
    readonly batch: number,
    readonly numKvHeads: number,
    readonly maxLength: number,
    readonly headDim: number,
    opts: { dtype?: DType; backend?: string } = {},
  ) {
    const dtype = (this.dtype = opts.dtype);
    this.keys = Array.from({ length: numLayers }, () => (dtype ? this.make(dtype, opts.backend) : null));
    this.values = Array.from({ length: numLayers }, () => (dtype ? this.make(dtype, opts.backend) : null));
  }

  /** A layer's buffer; `zero` for caches whose unwritten slots are read (masked), where garbage could be NaN. */
  protected make(dtype: DType, backend: string | undefined, zero = false): Tensor {
    return keep(empty([this.batch, this.numKvHeads, this.maxLength, this.headDim], dtype, { backend, tag: 'activation', zero }));
  }

  /**
   * Writes k/v [B, Hkv, T, hd] of one layer after the stored tokens and returns views of
   * everything stored so far ([B, Hkv, length + T, hd]). Call advance(T) after the last layer.
   * A cache that returns `mask` (StaticKVCache) hands back the whole buffer instead, with the
   * additive mask [1, 1, 1, maxLength] of the keys the new token may see (window applied).
   */
  update(layer: number, k: Tensor, v: Tensor, _window = 0): { k: Tensor; v: Tensor; mask?: Tensor } {
    const T = k.shape[2];
    if (this.length + T > this.maxLength)
      throw new Error(`KVCache: ${this.length} cached + ${T} new tokens exceed the cache length ${this.maxLength}`);
    const want = [this.batch, this.numKvHeads, T, this.headDim];
    if (k.ndim !== 4 || k.shape.some((s, i) => s !== want[i]))
      throw new Error(`KVCache: keys ${shapeStr(k.shape)} do not match the cache layout ${shapeStr(want)}`);
    if (!this.dtype && this.length === 0 && this.keys[layer] && this.keys[layer]!.dtype !== k.dtype) {
      for (const t of [this.keys, this.values]) t[layer]!.dispose(), (t[layer] = null);
    }
    const keys = (this.keys[layer] ??= this.make(k.dtype, k.backendName));
    const values = (this.values[layer] ??= this.make(v.dtype, v.backendName));
    copy_(narrow(keys, 2, this.length, T), k);
    copy_(narrow(values, 2, this.length, T), v);
    return { k: narrow(keys, 2, 0, this.length + T), v: narrow(values, 2, 0, this.length + T) };
  }

  advance(tokens: number): void {
    this.length += tokens;
  }

  reset(): void {
    this.length = 0;
  }

  dispose(): void {
    for (const t of [...this.keys, ...this.values]) t?.dispose();
  }
}
