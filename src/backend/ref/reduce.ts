// Reference reductions: out is in keepdim form, so an element's output index is its own index
// with the reduced dims set to 0.
import type { Layout } from '../../tensor/layout.js';
import { contiguousStrides } from '../../tensor/layout.js';
import type { Kernels } from '../kernels.js';
import { load, store } from './storage.js';

/** For each row-major element of `inner`, the row-major index of its cell in `outer` (keepdim). */
function reducedIndex(x: Layout, out: Layout): Int32Array {
  const n = x.numel;
  const res = new Int32Array(n);
  const ost = contiguousStrides(out.shape);
  const idx = new Array<number>(x.ndim).fill(0);
  for (let i = 0; i < n; i++) {
    let o = 0;
    for (let d = 0; d < x.ndim; d++) if (out.shape[d] !== 1) o += idx[d] * ost[d];
    res[i] = o;
    for (let d = x.ndim - 1; d >= 0; d--) {
      if (++idx[d] < x.shape[d]) break;
      idx[d] = 0;
    }
  }
  return res;
}

export const reduce: Kernels['reduce'] = (op, x, out) => {
  const v = load(x);
  const map = reducedIndex(x.layout, out.layout);
  const init = op === 'sum' ? 0 : op === 'max' ? -Infinity : Infinity;
  const acc = new Float64Array(out.layout.numel).fill(init);
  for (let i = 0; i < v.length; i++) {
    const o = map[i];
    if (op === 'sum') acc[o] += v[i];
    else if (Number.isNaN(v[i]) || Number.isNaN(acc[o])) acc[o] = NaN;
    else acc[o] = op === 'max' ? Math.max(acc[o], v[i]) : Math.min(acc[o], v[i]);
  }
  store(out, acc);
};

export const argReduce: Kernels['argReduce'] = (op, x, dim, out) => {
  const v = load(x);
  const map = reducedIndex(x.layout, out.layout);
  const inner = contiguousStrides(x.layout.shape)[dim];
  const size = x.layout.shape[dim];
  const best = new Float64Array(out.layout.numel).fill(NaN);
  const arg = new Float64Array(out.layout.numel).fill(-1);
  for (let i = 0; i < v.length; i++) {
    const o = map[i];
    const k = Math.floor(i / inner) % size;
    const better = op === 'argmax' ? v[i] > best[o] : v[i] < best[o];
    if (arg[o] < 0 || better || (Number.isNaN(v[i]) && !Number.isNaN(best[o]))) {
      best[o] = v[i];
      arg[o] = k;
    }
  }
  store(out, arg);
};
