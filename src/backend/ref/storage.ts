// Reference storage: a plain typed array. load()/store() move a strided view's elements to and
// from a dense Float64Array in row-major order, so every reference kernel is simple loops
// over dense float64 data (the oracle favours obviousness over speed).
import { type DType, type TypedArray, makeArray } from '../../tensor/dtype.js';
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../../tensor/half.js';
import type { Layout } from '../../tensor/layout.js';
import type { MemoryTag } from '../../tensor/memory.js';
import { Storage } from '../../tensor/storage.js';
import type { View } from '../kernels.js';

export class RefStorage extends Storage {
  readonly backendName = 'ref';
  array: TypedArray;
  constructor(dtype: DType, array: TypedArray, tag: MemoryTag) {
    super(dtype, array.length, tag);
    this.array = array;
  }
  protected freeBlock(): void {
    this.array = makeArray(this.dtype, 0);
  }
  protected allocBlock(): void {
    this.array = makeArray(this.dtype, this.numel);
  }
}

export function arrayOf(v: View): TypedArray {
  if (!(v.storage instanceof RefStorage)) throw new Error(`reference kernel got a tensor on backend '${v.storage.backendName}'`);
  if (v.storage.released) throw new Error('reference kernel got a disposed tensor');
  if (v.storage.evicted) throw new Error('reference kernel got a tensor whose storage is evicted (restore() it first)');
  return v.storage.array;
}

/** Storage offset of every element of the layout, in row-major logical order. */
export function offsets(layout: Layout): Float64Array {
  const n = layout.numel;
  const out = new Float64Array(n);
  const { shape, strides } = layout;
  const nd = shape.length;
  const idx = new Array<number>(nd).fill(0);
  let off = layout.offset;
  for (let i = 0; i < n; i++) {
    out[i] = off;
    for (let d = nd - 1; d >= 0; d--) {
      idx[d]++;
      off += strides[d];
      if (idx[d] < shape[d]) break;
      off -= strides[d] * shape[d];
      idx[d] = 0;
    }
  }
  return out;
}

export function getter(dtype: DType, a: TypedArray): (i: number) => number {
  switch (dtype) {
    case 'float16': return (i) => f16ToF32(a[i] as number);
    case 'bfloat16': return (i) => bf16ToF32(a[i] as number);
    case 'int64': return (i) => Number(a[i]);
    default: return (i) => a[i] as number;
  }
}

/** float64 -> int64 as the native cast does: trunc, NaN -> 0, saturating (BigInt(NaN) would throw). */
function toInt64(x: number): bigint {
  if (Number.isNaN(x)) return 0n;
  if (x >= 9223372036854775807) return 9223372036854775807n;
  if (x <= -9223372036854775808) return -9223372036854775808n;
  return BigInt(Math.trunc(x));
}

export function setter(dtype: DType, a: TypedArray): (i: number, x: number) => void {
  switch (dtype) {
    case 'float16': return (i, x) => { a[i] = f32ToF16(x); };
    case 'bfloat16': return (i, x) => { a[i] = f32ToBf16(x); };
    case 'int64': return (i, x) => { (a as BigInt64Array)[i] = toInt64(x); };
    case 'bool': return (i, x) => { a[i] = x !== 0 ? 1 : 0; };
    case 'float32': case 'float64': return (i, x) => { a[i] = x; };
    default: return (i, x) => { a[i] = Math.trunc(x); };
  }
}

/** The view's elements as float64, row-major. */
export function load(v: View): Float64Array {
  const get = getter(v.dtype, arrayOf(v));
  const offs = offsets(v.layout);
  const out = new Float64Array(offs.length);
  for (let i = 0; i < offs.length; i++) out[i] = get(offs[i]);
  return out;
}

/** Writes row-major values into the (possibly strided) view, converting to its dtype. */
export function store(v: View, values: ArrayLike<number>): void {
  const set = setter(v.dtype, arrayOf(v));
  const offs = offsets(v.layout);
  if (values.length !== offs.length) throw new Error(`reference store: ${values.length} values for ${offs.length} elements`);
  for (let i = 0; i < offs.length; i++) set(offs[i], values[i]);
}
