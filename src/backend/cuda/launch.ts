// Kernel launches: parameters are written into the addon's shared buffer in the layout CUDA's
// CU_LAUNCH_PARAM_BUFFER_POINTER expects (each at its natural alignment, in order), device
// pointers are computed from views whose extent was checked against their storage, and strided
// operands travel as one `Strided` struct (native/cuda/kernels/common.cuh) with their dims
// collapsed jointly. The emulator and cuFuncGetParamInfo check the packed sizes per kernel.
import { dtypeBytes } from '../../tensor/dtype.js';
import { shapeStr } from '../../tensor/layout.js';
import type { View } from '../kernels.js';
import { cudaContext } from './context.js';
import type { CudaFunction } from './modules.js';
import { timed } from './profile.js';
import { CudaStorage } from './storage.js';

export const MAX_DIMS = 8;
const STRIDED_BYTES = MAX_DIMS * 16 + 16;

/** Shapes and strides after merging dims that are contiguous in every operand (and dropping size-1 dims). */
export interface Collapsed {
  shape: number[];
  strides: number[][];
}

/** Collapses the shared logical shape of several operands (strides in elements, one list per operand). */
export function collapse(shape: readonly number[], strides: readonly (readonly number[])[]): Collapsed {
  const outShape: number[] = [];
  const outStrides: number[][] = strides.map(() => []);
  for (let d = 0; d < shape.length; d++) {
    if (shape[d] === 1) continue;
    const last = outShape.length - 1;
    if (last >= 0 && strides.every((s, k) => outStrides[k][last] === s[d] * shape[d])) {
      outShape[last] *= shape[d];
      strides.forEach((s, k) => { outStrides[k][last] = s[d]; });
    } else {
      outShape.push(shape[d]);
      strides.forEach((s, k) => outStrides[k].push(s[d]));
    }
  }
  if (outShape.length > MAX_DIMS) throw new Error(`cuda: ${outShape.length} non-mergeable dims (at most ${MAX_DIMS})`);
  return { shape: outShape, strides: outStrides };
}

/** The device address of a view's first element, after checking that every element it reaches is inside its storage. */
export function devicePointer(v: View, what = 'tensor'): number {
  const s = v.storage;
  if (!(s instanceof CudaStorage)) throw new Error(`cuda kernel got a ${what} on backend '${s.backendName}' (move it with .to('cuda'))`);
  if (s.released) throw new Error(`cuda kernel got a disposed ${what}`);
  if (s.evicted) throw new Error(`cuda kernel got a ${what} whose storage is evicted (restore() it first)`);
  const l = v.layout;
  if (l.offset < 0 || l.strides.some((x) => x < 0) || (l.numel > 0 && l.extent() > s.numel))
    throw new Error(`cuda: ${what} view ${shapeStr(l.shape)} (offset ${l.offset}, strides ${l.strides.join(',')}) reaches outside its ${s.numel}-element storage`);
  return s.ptr + l.offset * dtypeBytes(v.dtype);
}

/** Writes one launch's parameters. */
export class Params {
  private view: DataView;
  private off = 0;
  readonly sizes: number[] = [];
  constructor(private readonly buffer: Uint8Array) {
    this.view = new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  }
  reset(): this {
    this.off = 0;
    this.sizes.length = 0;
    return this;
  }
  get bytes(): number {
    return this.off;
  }
  private at(size: number, align: number): number {
    const o = Math.ceil(this.off / align) * align;
    if (o + size > this.buffer.byteLength) throw new Error(`cuda launch: parameters exceed ${this.buffer.byteLength} bytes`);
    this.off = o + size;
    this.sizes.push(size);
    return o;
  }
  private int64At(o: number, x: number): void {
    if (!Number.isSafeInteger(x)) throw new Error(`cuda launch: ${x} is not an integer`);
    const hi = Math.floor(x / 4294967296);
    this.view.setUint32(o, x - hi * 4294967296, true);
    this.view.setInt32(o + 4, hi, true);
  }
  i32(x: number): this {
    this.view.setInt32(this.at(4, 4), x, true);
    return this;
  }
  u32(x: number): this {
    this.view.setUint32(this.at(4, 4), x >>> 0, true);
    return this;
  }
  i64(x: number): this {
    this.int64At(this.at(8, 8), x);
    return this;
  }
  f32(x: number): this {
    this.view.setFloat32(this.at(4, 4), x, true);
    return this;
  }
  f64(x: number): this {
    this.view.setFloat64(this.at(8, 8), x, true);
    return this;
  }
  /** A raw device address (0 for a null pointer). */
  ptr(address: number): this {
    this.int64At(this.at(8, 8), address);
    return this;
  }
  /** The address of a view's first element (null -> 0). */
  view_(v: View | null, what?: string): this {
    return this.ptr(v === null ? 0 : devicePointer(v, what));
  }
  /** A Strided struct: shape and strides (elements), ndim, whether offset(i) == i, and whether 32-bit math suffices. */
  strided(shape: readonly number[], strides: readonly number[]): this {
    const o = this.at(STRIDED_BYTES, 8);
    let contiguous = 1;
    let numel = 1;
    let last = 0;
    for (let d = shape.length - 1; d >= 0; d--) {
      if (strides[d] !== numel) contiguous = 0;
      numel *= shape[d];
      last += (shape[d] - 1) * strides[d];
    }
    const small = numel < 2 ** 31 && last < 2 ** 31 ? 1 : 0;
    for (let d = 0; d < MAX_DIMS; d++) {
      this.int64At(o + 8 * d, d < shape.length ? shape[d] : 1);
      this.int64At(o + 8 * (MAX_DIMS + d), d < shape.length ? strides[d] : 0);
    }
    this.view.setInt32(o + 16 * MAX_DIMS, shape.length, true);
    this.view.setInt32(o + 16 * MAX_DIMS + 4, contiguous, true);
    this.view.setInt32(o + 16 * MAX_DIMS + 8, small, true);
    this.view.setInt32(o + 16 * MAX_DIMS + 12, 0, true);
    return this;
  }
}

let params: Params | null = null;

/** The shared parameter writer, reset for a new launch. */
export function newParams(): Params {
  params ??= new Params(cudaContext().addon.cudaArgs);
  return params.reset();
}

export interface LaunchConfig {
  grid: number | [number, number, number];
  block: number | [number, number, number];
  smem?: number;
}

const dims3 = (d: number | [number, number, number]): [number, number, number] => (typeof d === 'number' ? [d, 1, 1] : d);

/** Launches fn with the parameters last written by newParams(). */
export function launch(fn: CudaFunction, p: Params, cfg: LaunchConfig): void {
  if (!fn.checked) {
    if (fn.paramSizes.length && fn.paramSizes.join(',') !== p.sizes.join(','))
      throw new Error(`cuda kernel ${fn.name} takes parameters of sizes [${fn.paramSizes}] but was launched with [${p.sizes}]`);
    fn.checked = true;
  }
  const [gx, gy, gz] = dims3(cfg.grid);
  const [bx, by, bz] = dims3(cfg.block);
  if (gx === 0 || gy === 0 || gz === 0) return;
  const addon = cudaContext().addon;
  timed(fn.name, () => addon.cudaLaunch(fn.handle, gx, gy, gz, bx, by, bz, cfg.smem ?? 0, p.bytes));
  if (process.env.KESTREL_CUDA_SYNC === '1') addon.cudaSync();
}

/** Blocks for a grid-stride loop over n elements with `threads` per block. */
export function gridFor(n: number, threads = 256): number {
  const ctx = cudaContext();
  const cap = ctx.emulated ? 64 : ctx.device.smCount * 16;
  return Math.max(1, Math.min(Math.ceil(n / threads), cap));
}
