// Loads the C++ addon (build/Release/kestrel.node) and packs kernel arguments into its shared
// Float64Array, the one calling convention every native kernel uses (native/kernel_api.h).
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DType } from '../../tensor/dtype.js';

export interface NativeAddon {
  alloc(bytes: number, zero: boolean): number;
  free(handle: number): void;
  write(handle: number, byteOffset: number, src: ArrayBufferView): void;
  read(handle: number, byteOffset: number, dst: ArrayBufferView): void;
  call(kernelId: number, argCount: number): void;
  info(): { avx2: boolean; fma: boolean; avx512f: boolean; f16c: boolean; threads: number };
  setThreads(n: number): void;
  liveBytes(): number;
  args: Float64Array;
  kernels: string[];
}

/** Codes shared with native/kernel_api.h (enum DType). */
export const DTYPE_CODE: Record<DType, number> = {
  float32: 0, float64: 1, float16: 2, bfloat16: 3, int32: 4, int64: 5, int8: 6, uint8: 7, bool: 8,
};

let cached: NativeAddon | null | undefined;
let loadError = '';

/** The addon, or null when it was not built (the reference backend still works). */
export function loadNative(): NativeAddon | null {
  if (cached !== undefined) return cached;
  // src/backend/cpu and dist/backend/cpu both sit three levels below the package root.
  const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
  const path = join(root, 'build', 'Release', 'kestrel.node');
  try {
    if (!existsSync(path)) throw new Error(`${path} not found (run npm ci or npm run build)`);
    cached = createRequire(import.meta.url)(path) as NativeAddon;
  } catch (e) {
    loadError = (e as Error).message;
    cached = null;
  }
  return cached;
}

export const nativeLoadError = (): string => loadError;

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
