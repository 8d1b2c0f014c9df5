// Tensor creation: from JS data, constants, ranges and seeded random draws.
import { type DType, type TypedArray, assertDType, isFloat, makeArray } from '../tensor/dtype.js';
import { f32ToBf16, f32ToF16 } from '../tensor/half.js';
import { type Shape, numel, shapeStr } from '../tensor/layout.js';
import { type Generator, defaultGenerator } from '../tensor/rng.js';
import { Layout } from '../tensor/layout.js';
import { currentTag } from '../tensor/memory.js';
import { Tensor } from '../tensor/tensor.js';
import { backendOf, withLayout } from '../backend/index.js';
import { noGrad } from '../tensor/grad_mode.js';
import { tidy } from '../tensor/scope.js';
import { type EmptyOpts, empty, resolveBackend } from './dispatch.js';
import { add, mul, to, unary } from './elementwise.js';

export interface CreateOpts extends EmptyOpts {
  dtype?: DType;
  requiresGrad?: boolean;
}

export type NestedData = number | boolean | bigint | readonly NestedData[];

function inferShape(data: NestedData): number[] {
  const shape: number[] = [];
  let d: NestedData = data;
  while (Array.isArray(d)) {
    shape.push(d.length);
    d = d[0] as NestedData;
  }
  return shape;
}

function flatten(data: NestedData, shape: number[], depth: number, out: (number | bigint | boolean)[]): void {
  if (depth === shape.length) {
    if (Array.isArray(data)) throw new Error(`tensor: ragged nested array (expected a scalar at depth ${depth})`);
    out.push(data as number | bigint | boolean);
    return;
  }
  if (!Array.isArray(data) || data.length !== shape[depth])
    throw new Error(`tensor: ragged nested array: expected length ${shape[depth]} at depth ${depth}`);
  for (const x of data) flatten(x, shape, depth + 1, out);
}

// Integer dtypes other than int64: the values their storage holds.
const INT_RANGE: Partial<Record<DType, readonly [number, number]>> = {
  int32: [-(2 ** 31), 2 ** 31 - 1],
  int8: [-128, 127],
  uint8: [0, 255],
};
const [MIN_INT64, MAX_INT64] = [-(2n ** 63n), 2n ** 63n - 1n];

type Value = number | bigint | boolean;

/** tensor()'s error for values[i], which dtype cannot hold exactly. */
function notHeld(dtype: DType, v: Value, i: number, range: string): Error {
  return new Error(`tensor: ${typeof v === 'bigint' ? `${v}n` : v} at flat index ${i} is not a valid ${dtype} (expected an integer in ${range})`);
}

/**
 * Converts JS values into dtype's storage representation. Integer dtypes take integers in their
 * range only (fractions, NaN, Infinity and overflow throw, naming the first); int64 takes safe-integer
 * numbers or bigints in int64's range. One plain loop per dtype: tensor() of batches is a hot path.
 */
export function encode(dtype: DType, values: ArrayLike<Value>): TypedArray {
  const n = values.length;
  const out = makeArray(dtype, n);
  const range = INT_RANGE[dtype];
  if (dtype === 'int64') {
    const o = out as BigInt64Array;
    for (let i = 0; i < n; i++) {
      const v = values[i];
      if (typeof v === 'bigint') {
        if (v < MIN_INT64 || v > MAX_INT64) throw notHeld(dtype, v, i, '[-2^63, 2^63 - 1] (a bigint) or [-(2^53 - 1), 2^53 - 1] (a number)');
        o[i] = v;
      } else {
        const x = Number(v);
        if (!Number.isSafeInteger(x)) throw notHeld(dtype, v, i, '[-(2^53 - 1), 2^53 - 1] (pass a bigint beyond that)');
        o[i] = BigInt(x);
      }
    }
  } else if (range) {
    const [lo, hi] = range;
    for (let i = 0; i < n; i++) {
      const x = Number(values[i]);
      if (!Number.isInteger(x) || x < lo || x > hi) throw notHeld(dtype, values[i], i, `[${lo}, ${hi}]`);
      out[i] = x;
    }
  } else {
    for (let i = 0; i < n; i++) {
      const x = Number(values[i]);
      if (dtype === 'float16') out[i] = f32ToF16(x);
      else if (dtype === 'bfloat16') out[i] = f32ToBf16(x);
      else if (dtype === 'bool') out[i] = x ? 1 : 0;
      else out[i] = x;
    }
  }
  return out;
}

/**
 * A tensor from nested arrays, a scalar or a typed array.
 * @example k.tensor([[1, 2], [3, 4]]); k.tensor(new Float32Array(6), { shape: [2, 3] })
 */
export function tensor(data: NestedData | TypedArray, opts: CreateOpts & { shape?: Shape } = {}): Tensor {
  const backend = resolveBackend(opts.backend);
  let shape: number[];
  let dtype: DType;
  let raw: TypedArray;
  if (ArrayBuffer.isView(data)) {
    if (data instanceof Uint16Array && opts.dtype !== 'float16' && opts.dtype !== 'bfloat16')
      throw new Error('tensor: a Uint16Array holds raw 16-bit floats; pass dtype float16 or bfloat16');
    dtype = assertDType(opts.dtype ?? dtypeOfTyped(data), 'tensor');
    raw = data instanceof Uint16Array || dtype === dtypeOfTyped(data) ? data : encode(dtype, data);
    shape = opts.shape ? [...opts.shape] : [data.length];
  } else {
    shape = inferShape(data);
    const flat: (number | bigint | boolean)[] = [];
    flatten(data, shape, 0, flat);
    dtype = assertDType(opts.dtype ?? (typeof flat[0] === 'boolean' ? 'bool' : typeof flat[0] === 'bigint' ? 'int64' : 'float32'), 'tensor');
    raw = encode(dtype, flat);
    if (opts.shape) shape = [...opts.shape];
  }
  if (numel(shape) !== raw.length) throw new Error(`tensor: shape ${shapeStr(shape)} does not hold ${raw.length} elements`);
  return finish(new Tensor(backend.fromArray(dtype, raw, opts.tag ?? currentTag('other')), new Layout(shape)), opts);
}

function dtypeOfTyped(a: TypedArray): DType {
  if (a instanceof Float32Array) return 'float32';
  if (a instanceof Float64Array) return 'float64';
  if (a instanceof Int32Array) return 'int32';
  if (a instanceof BigInt64Array) return 'int64';
  if (a instanceof Int8Array) return 'int8';
  if (a instanceof Uint8Array) return 'uint8';
  return 'float16';
}

function finish(t: Tensor, opts: CreateOpts): Tensor {
  if (opts.requiresGrad) t.requiresGrad_(true);
  return t;
}

export function full(shape: Shape, value: number, opts: CreateOpts = {}): Tensor {
  const t = empty(shape, opts.dtype ?? 'float32', opts);
  backendOf(t).kernels.fill(t, value);
  return finish(t, opts);
}

export const zeros = (shape: Shape, opts: CreateOpts = {}): Tensor =>
  finish(empty(shape, opts.dtype ?? 'float32', { ...opts, zero: true }), opts);
export const ones = (shape: Shape, opts: CreateOpts = {}): Tensor => full(shape, 1, opts);
export const zerosLike = (t: Tensor, opts: CreateOpts = {}): Tensor =>
  zeros(t.shape, { dtype: t.dtype, backend: t.backendName, ...opts });
export const onesLike = (t: Tensor, opts: CreateOpts = {}): Tensor => full(t.shape, 1, { dtype: t.dtype, backend: t.backendName, ...opts });
export const fullLike = (t: Tensor, value: number, opts: CreateOpts = {}): Tensor =>
  full(t.shape, value, { dtype: t.dtype, backend: t.backendName, ...opts });

/** A 0-d tensor holding value. */
export const scalar = (value: number, opts: CreateOpts = {}): Tensor => full([], value, opts);

/**
 * Values start, start+step, ... below end (torch.arange). Integer arguments give int64.
 * @example k.arange(5); k.arange(0, 1, 0.25)
 */
export function arange(start: number, end?: number, step = 1, opts: CreateOpts = {}): Tensor {
  if (end === undefined) [start, end] = [0, start];
  if (step === 0) throw new Error('arange: step must be non-zero');
  const n = Math.max(0, Math.ceil((end - start) / step));
  const ints = [start, end, step].every(Number.isInteger);
  const t = empty([n], opts.dtype ?? (ints ? 'int64' : 'float32'), opts);
  backendOf(t).kernels.arange(t, start, step);
  return finish(t, opts);
}

export function eye(n: number, m = n, opts: CreateOpts = {}): Tensor {
  const t = zeros([n, m], opts);
  const diag = new Layout([Math.min(n, m)], [m + 1], 0);
  backendOf(t).kernels.fill(withLayout(t, diag), 1);
  return t;
}

export interface RandomOpts extends CreateOpts {
  generator?: Generator;
}

function draw(shape: Shape, dist: 'uniform' | 'normal', opts: RandomOpts): Tensor {
  const dtype = opts.dtype ?? 'float32';
  if (!isFloat(dtype)) throw new Error(`${dist === 'uniform' ? 'rand' : 'randn'}: dtype must be floating point, got ${dtype}`);
  const gen = opts.generator ?? defaultGenerator;
  const t = empty(shape, dtype, opts);
  backendOf(t).kernels.random(t, dist, gen.seed, gen.next(dist, t.numel));
  return finish(t, opts);
}

/** Uniform [0, 1) draws from the seeded generator (k.manualSeed). */
export const rand = (shape: Shape, opts: RandomOpts = {}): Tensor => draw(shape, 'uniform', opts);
/** Standard normal draws from the seeded generator. */
export const randn = (shape: Shape, opts: RandomOpts = {}): Tensor => draw(shape, 'normal', opts);

/** Integers uniform in [low, high) as int64 (torch.randint). */
export function randint(low: number, high: number, shape: Shape, opts: RandomOpts = {}): Tensor {
  if (!(high > low)) throw new Error(`randint: high (${high}) must exceed low (${low})`);
  return tidy(() => noGrad(() => {
    const u = draw(shape, 'uniform', { ...opts, dtype: 'float64', requiresGrad: false });
    return to(add(unary('floor', mul(u, high - low)), low), opts.dtype ?? 'int64');
  }));
}
