// Moving data between backends and reading it back into JavaScript.
import { backendOf, getBackend } from '../backend/index.js';
import type { BackendName } from '../backend/kernels.js';
import type { TypedArray } from '../tensor/dtype.js';
import { bf16ToF32, f16ToF32 } from '../tensor/half.js';
import { Layout } from '../tensor/layout.js';
import { Tensor } from '../tensor/tensor.js';
import { inputs, record } from './dispatch.js';
import { contiguous } from './view.js';

/** The elements in row-major order, in the dtype's storage representation (a copy). */
export function toTypedArray(x: Tensor): TypedArray {
  inputs('toTypedArray', x);
  const c = contiguous(x);
  const data = backendOf(c).read(c.storage, c.layout.offset, c.numel);
  c.dispose();
  return data;
}

/** The elements as float32 (half types decoded, integers converted). */
export function toFloat32Array(x: Tensor): Float32Array {
  const raw = toTypedArray(x);
  if (raw instanceof Float32Array) return raw;
  if (x.dtype === 'float16') return Float32Array.from(raw as Uint16Array, f16ToF32);
  if (x.dtype === 'bfloat16') return Float32Array.from(raw as Uint16Array, bf16ToF32);
  return Float32Array.from(raw as ArrayLike<number | bigint>, Number);
}

/** Element values as JS numbers (int64 as numbers; exact up to 2^53). */
function numbers(x: Tensor): number[] {
  const raw = toTypedArray(x);
  if (x.dtype === 'float16') return Array.from(raw as Uint16Array, f16ToF32);
  if (x.dtype === 'bfloat16') return Array.from(raw as Uint16Array, bf16ToF32);
  return Array.from(raw as ArrayLike<number | bigint>, Number);
}

export type NestedNumbers = number | NestedNumbers[];

/** Nested arrays of numbers with the tensor's shape (a 0-d tensor gives a number). */
export function toArray(x: Tensor): NestedNumbers {
  const flat = numbers(x);
  const build = (dim: number, offset: number): NestedNumbers => {
    if (dim === x.ndim) return flat[offset];
    const stride = x.shape.slice(dim + 1).reduce((a, b) => a * b, 1);
    return Array.from({ length: x.shape[dim] }, (_, i) => build(dim + 1, offset + i * stride));
  };
  return build(0, 0);
}

/** The single value of a one-element tensor. */
export function item(x: Tensor): number {
  if (x.numel !== 1) throw new Error(`item: tensor of shape [${x.shape.join(', ')}] has ${x.numel} elements, not 1`);
  return numbers(x)[0];
}

/** A copy on another backend; gradients flow back across. */
export function toBackend(x: Tensor, name: BackendName): Tensor {
  inputs('to', x);
  if (x.backendName === name) return contiguous(x);
  const target = getBackend(name);
  const out = new Tensor(target.fromArray(x.dtype, toTypedArray(x), x.storage.tag === 'param' ? 'other' : x.storage.tag), new Layout([...x.shape]));
  const from = x.backendName as BackendName;
  return record('to', out, [x], (g) => [toBackend(g, from)]);
}
