// A KV cache whose decode steps have fixed shapes and addresses, so one step can be recorded as a
// CUDA graph and replayed per token (src/infer/graph_decode.ts): the write position lives in a
// device tensor (set before each step), a new token's keys/values are written where the slot
// index equals it (an elementwise select over the whole buffer, no host offset), and attention
// reads the whole buffer through an additive mask built from the same position
// (0 for slots <= position and inside the sliding window, MASK_MIN elsewhere). The slot selector
// and the masks are the same for every layer of a step: the first layer makes them, the others
// reuse them (a recorded step runs 3 to 6 fewer kernels a layer), and advance() frees them. Prompts
// (T > 1) are written and read as by KVCache.
import { arange, full, tensor } from '../ops/creation.js';
import { compare, logicalAnd, sub, to, where } from '../ops/elementwise.js';
import { copy_, copyWhere_ } from '../ops/inplace.js';
import { reshape } from '../ops/view.js';
import type { DType } from '../tensor/dtype.js';
import { keep, tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { MASK_MIN } from './causal_lm.js';
import { KVCache } from './kv_cache.js';

export class StaticKVCache extends KVCache {
  /** the slot the next token is written to: int64 [1] on the cache's device */
  readonly position: Tensor;
  /** 0 .. maxLength-1 (int64), compared against `position` */
  private readonly slots: Tensor;
  /** true: single-token updates use the device position (the graph's path); false: like KVCache */
  devicePositions = false;
  /** this step's slot selector ('slot') and masks (by window), made by its first layer */
  private readonly stepTensors = new Map<string, Tensor>();

  constructor(numLayers: number, batch: number, numKvHeads: number, maxLength: number, headDim: number, opts: { dtype?: DType; backend?: string } = {}) {
    super(numLayers, batch, numKvHeads, maxLength, headDim, opts);
    this.position = keep(full([1], 0, { dtype: 'int64', backend: opts.backend }));
    this.slots = keep(arange(0, maxLength, 1, { dtype: 'int64', backend: opts.backend }));
  }

  /** Sets where the next token goes (an upload: do it before a capture or a replay, never inside one). */
  setPosition(p: number): void {
    if (!Number.isInteger(p) || p < 0 || p >= this.maxLength) throw new Error(`StaticKVCache: position ${p} outside [0, ${this.maxLength})`);
    tidy(() => copy_(this.position, tensor([p], { dtype: 'int64', backend: this.position.backendName })));
    this.length = p;
  }

  /** Zeroed: attention reads every slot, and 0 * NaN garbage in a masked slot would still be NaN. */
  protected override make(dtype: DType, backend: string | undefined): Tensor {
    return super.make(dtype, backend, true);
  }

  override update(layer: number, k: Tensor, v: Tensor, window = 0): { k: Tensor; v: Tensor; mask?: Tensor } {
    if (!this.devicePositions || k.shape[2] !== 1) return super.update(layer, k, v, window);
    const L = this.maxLength;
    const keys = (this.keys[layer] ??= this.make(k.dtype, k.backendName));
    const values = (this.values[layer] ??= this.make(v.dtype, v.backendName));
    const slot = this.perStep('slot', () => reshape(compare('eq', this.slots, this.position), [1, 1, L, 1]));
    // in place, the new token broadcast over the slots: each element of the buffer is read before it is
    // written; in the cache's dtype (a cache made with one: bf16 keys for float32 decoding)
    copyWhere_(keys, slot, to(k, keys.dtype));
    copyWhere_(values, slot, to(v, values.dtype));
    const mask = this.perStep(`mask ${window}`, () => {
      let visible = compare('le', this.slots, this.position);
      if (window > 0) visible = logicalAnd(visible, compare('gt', this.slots, sub(this.position, window)));
      return reshape(where(visible, 0, MASK_MIN), [1, 1, 1, L]);
    });
    return { k: keys, v: values, mask };
  }

  /** The step's tensor `key`, made by `make` (outside the caller's scope) on first use. */
  private perStep(key: string, make: () => Tensor): Tensor {
    let t = this.stepTensors.get(key);
    if (!t) this.stepTensors.set(key, (t = keep(tidy(make))));
    return t;
  }

  /** The step is over: its slot selector and masks go (the next position needs new ones). */
  override advance(tokens: number): void {
    this.releaseStep();
    super.advance(tokens);
  }

  private releaseStep(): void {
    for (const t of this.stepTensors.values()) t.dispose();
    this.stepTensors.clear();
  }

  override dispose(): void {
    this.releaseStep();
    super.dispose();
    this.position.dispose();
    this.slots.dispose();
  }
}
