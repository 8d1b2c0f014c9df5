// Reductions over dims with keepdim, and sumToShape (the VJP of broadcasting).
import { backendOf } from '../backend/index.js';
import type { ReduceOp } from '../backend/kernels.js';
import { computeDType, isFloat } from '../tensor/dtype.js';
import { type Shape, normDim, sameShape, shapeStr } from '../tensor/layout.js';
import type { Tensor } from '../tensor/tensor.js';
import { emptyLike, inputs, needsGrad, record, save } from './dispatch.js';
import { compare, div, halfDirect, mul, sub, to, unary, where, add } from './elementwise.js';
import { expand, reshape } from './view.js';
import { noGrad } from '../tensor/grad_mode.js';
import { tidy } from '../tensor/scope.js';

export type Dims = number | readonly number[] | undefined;

function normDims(x: Tensor, dims: Dims, op: string): number[] {
  if (dims === undefined) return x.shape.map((_, i) => i);
  const list = typeof dims === 'number' ? [dims] : [...dims];
  const out = list.map((d) => normDim(d, x.ndim, op));
  if (new Set(out).size !== out.length) throw new Error(`${op}: repeated dim in [${list.join(', ')}]`);
  return out;
}

function keepShape(x: Tensor, dims: number[]): number[] {
  return x.shape.map((s, i) => (dims.includes(i) ? 1 : s));
}

function dropDims(t: Tensor, dims: number[], keepdim: boolean): Tensor {
  if (keepdim || dims.length === 0) return t;
  const shape = t.shape.filter((_, i) => !dims.includes(i));
  const out = reshape(t, shape);
  t.dispose();
  return out;
}

function reduceKernel(op: ReduceOp, x: Tensor, dims: number[]): Tensor {
  const out = emptyLike(x, keepShape(x, dims));
  backendOf(x).kernels.reduce(op, x, out);
  return out;
}

/** Sum over dims (all by default). Integer and bool inputs sum to int64. */
export function sum(x: Tensor, dims?: Dims, keepdim = false): Tensor {
  inputs('sum', x);
  const d = normDims(x, dims, 'sum');
  // half inputs sum in float32 and round back; a halfElementwise backend's kernel does that itself
  const dtype = isFloat(x.dtype) ? (halfDirect(x) ? x.dtype : computeDType(x.dtype)) : 'int64';
  const xc = x.dtype === dtype ? x : to(x, dtype);
  let out = reduceKernel('sum', xc, d);
  if (needsGrad(xc)) {
    const shape = xc.shape;
    out = record('sum', out, [xc], (g) => [expand(g, shape)]);
  }
  if (xc !== x) xc.dispose();
  if (x.dtype !== dtype && isFloat(x.dtype)) {
    const back = to(out, x.dtype);
    out.dispose();
    out = back;
  }
  return dropDims(out, d, keepdim);
}

export function mean(x: Tensor, dims?: Dims, keepdim = false): Tensor {
  const d = normDims(x, dims, 'mean');
  const n = d.reduce((p, i) => p * x.shape[i], 1);
  return tidy(() => div(sum(isFloat(x.dtype) ? x : to(x, 'float32'), d, keepdim), n));
}

/** Max/min values over dims; the gradient is split evenly among tied maxima (torch.amax). */
function extreme(op: 'max' | 'min', x: Tensor, dims: Dims, keepdim: boolean): Tensor {
  inputs(op, x);
  const d = normDims(x, dims, op);
  if (d.some((i) => x.shape[i] === 0)) throw new Error(`${op}: cannot reduce an empty dim of ${shapeStr(x.shape)}`);
  let out = reduceKernel(op, x, d);
  if (needsGrad(x)) {
    const [xs, os] = [save(x), save(out)];
    out = record(op, out, [x], (g) => {
      const hit = to(compare('eq', xs, os), g.dtype);
      const count = sum(hit, d, true);
      return [div(mul(hit, g), count)];
    }, [xs, os]);
  }
  return dropDims(out, d, keepdim);
}

export const max = (x: Tensor, dims?: Dims, keepdim = false): Tensor => extreme('max', x, dims, keepdim);
export const min = (x: Tensor, dims?: Dims, keepdim = false): Tensor => extreme('min', x, dims, keepdim);

function argExtreme(op: 'argmax' | 'argmin', x: Tensor, dim: number | undefined, keepdim: boolean): Tensor {
  inputs(op, x);
  if (dim === undefined) {
    const flat = reshape(x, [x.numel]);
    const out = argExtreme(op, flat, 0, false);
    flat.dispose();
    return out;
  }
  const d = normDim(dim, x.ndim, op);
  if (x.shape[d] === 0) throw new Error(`${op}: cannot reduce an empty dim of ${shapeStr(x.shape)}`);
  const out = emptyLike(x, keepShape(x, [d]), 'int64');
  backendOf(x).kernels.argReduce(op, x, d, out);
  return dropDims(out, [d], keepdim);
}

/** Index of the first maximum along dim (over all elements when dim is undefined), int64. */
export const argmax = (x: Tensor, dim?: number, keepdim = false): Tensor => argExtreme('argmax', x, dim, keepdim);
export const argmin = (x: Tensor, dim?: number, keepdim = false): Tensor => argExtreme('argmin', x, dim, keepdim);

/** Variance over dims with Bessel's correction by default (torch.var, correction=1). */
export function variance(x: Tensor, dims?: Dims, keepdim = false, correction = 1): Tensor {
  const d = normDims(x, dims, 'var');
  const n = d.reduce((p, i) => p * x.shape[i], 1);
  return tidy(() => {
    const c = sub(x, mean(x, d, true));
    return div(sum(mul(c, c), d, keepdim), Math.max(n - correction, 0));
  });
}

/** log(sum(exp(x))) over dims, stable: the max is subtracted first (it cancels in the gradient). */
export function logsumexp(x: Tensor, dims?: Dims, keepdim = false): Tensor {
  const d = normDims(x, dims, 'logsumexp');
  return tidy(() => {
    const m = noGrad(() => {
      const mx = max(x, d, true);
      return where(compare('eq', unary('abs', mx), Infinity), 0, mx); // all -inf rows stay -inf
    });
    const r = add(unary('log', sum(unary('exp', sub(x, m)), d, true)), m);
    return keepdim ? r : reshape(r, x.shape.filter((_, i) => !d.includes(i)));
  });
}

/** Sums a broadcast gradient back to `shape` (the VJP of expand / broadcasting). */
export function sumToShape(g: Tensor, shape: Shape): Tensor {
  if (sameShape(g.shape, shape)) return g;
  const lead = g.ndim - shape.length;
  const dims: number[] = [];
  for (let i = 0; i < g.ndim; i++) if (i < lead || (shape[i - lead] === 1 && g.shape[i] !== 1)) dims.push(i);
  const s = sum(g, dims, true);
  const out = reshape(s, shape);
  s.dispose();
  return out;
}
