// Packs kernel arguments into the addon's shared Float64Array, the one calling convention every
// native CPU kernel uses (native/kernel_api.h). The addon itself is loaded by ../addon.ts.
import type { DType } from '../../tensor/dtype.js';
import type { NativeAddon } from '../addon.js';
import { activeRecording } from './graph.js';


/** Codes shared with native/kernel_api.h (enum DType). */
export const DTYPE_CODE: Record<DType, number> = {
  float32: 0, float64: 1, float16: 2, bfloat16: 3, int32: 4, int64: 5, int8: 6, uint8: 7, bool: 8,
};

/** A strided view as the native side decodes it (Args::view). */
export interface NativeView {
  readonly handle: number;
  readonly dtype: DType;
  readonly offset: number;
  readonly shape: readonly number[];
  readonly strides: readonly number[];
}

/**
 * Packs one kernel call. Usage: `pack().view(a).view(out).num(0.5).call('unary')`.
 * Views are written as handle, dtype, offset, ndim, shape..., strides...; null views as 0.
 */
export class Packer {
  private n = 0;
  private ids = new Map<string, number>();
  /** per argument of the call being packed: 1 for a view's offset, shape and strides (what a CPU graph may move) */
  private readonly kinds: Uint8Array;
  constructor(private readonly addon: NativeAddon) {
    addon.kernels.forEach((name, i) => this.ids.set(name, i));
    this.kinds = new Uint8Array(addon.args.length);
  }

  /** How many numbers one call can carry (the addon's argument buffer). */
  get slots(): number {
    return this.addon.args.length;
  }

  reset(): this {
    this.n = 0;
    return this;
  }

  num(x: number): this {
    this.kinds[this.n] = 0;
    this.addon.args[this.n++] = x;
    return this;
  }

  view(v: NativeView | null): this {
    const a = this.addon.args;
    const start = this.n;
    if (v === null) {
      a[this.n++] = 0;
      this.kinds[start] = 0;
      return this;
    }
    a[this.n++] = v.handle;
    a[this.n++] = DTYPE_CODE[v.dtype];
    a[this.n++] = v.offset;
    a[this.n++] = v.shape.length;
    for (const s of v.shape) a[this.n++] = s;
    for (const s of v.strides) a[this.n++] = s;
    // handle, dtype and rank are fixed; the offset and the extents may move with a decode position
    this.kinds.fill(1, start, this.n);
    this.kinds[start] = this.kinds[start + 1] = this.kinds[start + 3] = 0;
    return this;
  }

  call(kernel: string): void {
    const n = this.n;
    this.n = 0; // cleared first: a failed call must not leave arguments behind for the next one
    const id = this.ids.get(kernel);
    if (id === undefined) throw new Error(`native kernel '${kernel}' is not in the addon (rebuild with npm run build)`);
    activeRecording()?.push(id, this.addon.args, this.kinds, n);
    this.addon.call(id, n);
  }

  has(kernel: string): boolean {
    return this.ids.has(kernel);
  }
}
