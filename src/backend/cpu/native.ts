// Packs kernel arguments into the addon's shared Float64Array, the one calling convention every
// native CPU kernel uses (native/kernel_api.h). The addon itself is loaded by ../addon.ts.
import type { DType } from '../../tensor/dtype.js';
import type { NativeAddon } from '../addon.js';


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
  constructor(private readonly addon: NativeAddon) {
    addon.kernels.forEach((name, i) => this.ids.set(name, i));
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
    this.addon.args[this.n++] = x;
    return this;
  }

  view(v: NativeView | null): this {
    const a = this.addon.args;
    if (v === null) {
      a[this.n++] = 0;
      return this;
    }
    a[this.n++] = v.handle;
    a[this.n++] = DTYPE_CODE[v.dtype];
    a[this.n++] = v.offset;
    a[this.n++] = v.shape.length;
    for (const s of v.shape) a[this.n++] = s;
    for (const s of v.strides) a[this.n++] = s;
    return this;
  }

  call(kernel: string): void {
    const n = this.n;
    this.n = 0; // cleared first: a failed call must not leave arguments behind for the next one
    const id = this.ids.get(kernel);
    if (id === undefined) throw new Error(`native kernel '${kernel}' is not in the addon (rebuild with npm run build)`);
    this.addon.call(id, n);
  }

  has(kernel: string): boolean {
    return this.ids.has(kernel);
  }
}
