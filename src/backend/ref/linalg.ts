// Reference matmul and indexing kernels: textbook loops over dense row-major values.
import { contiguousStrides } from '../../tensor/layout.js';
import type { Kernels } from '../kernels.js';
import { load, store } from './storage.js';

export const matmul: Kernels['matmul'] = (a, b, out, accumulate) => {
  const av = load(a);
  const bv = load(b);
  const shape = out.layout.shape;
  const nd = shape.length;
  const [M, N] = [shape[nd - 2], shape[nd - 1]];
  const K = a.layout.shape[nd - 1];
  const batch = out.layout.numel / (M * N) || 0;
  const res = accumulate ? load(out) : new Float64Array(out.layout.numel);
  for (let p = 0; p < batch; p++)
    for (let i = 0; i < M; i++)
      for (let j = 0; j < N; j++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += av[p * M * K + i * K + k] * bv[p * K * N + k * N + j];
        res[p * M * N + i * N + j] += s;
      }
  store(out, res);
};

/** Row-major multi-index of flat position i in shape. */
function unravel(i: number, strides: readonly number[], shape: readonly number[]): number[] {
  return shape.map((s, d) => Math.floor(i / strides[d]) % s);
}

// [0, size), as PyTorch: a negative index is an error, never wrapped Python-style
function checkIndex(op: string, idx: number, size: number): void {
  if (!Number.isInteger(idx) || idx < 0 || idx >= size)
    throw new Error(`${op}: index ${idx} is out of range for a dimension of size ${size}`);
}

export const gather: Kernels['gather'] = (x, dim, index, out) => {
  const xv = load(x);
  const iv = load(index);
  const xs = contiguousStrides(x.layout.shape);
  const is = contiguousStrides(index.layout.shape);
  const size = x.layout.shape[dim];
  store(out, iv.map((ix, i) => {
    checkIndex('gather', ix, size);
    const pos = unravel(i, is, index.layout.shape);
    pos[dim] = ix;
    return xv[pos.reduce((s, p, d) => s + p * xs[d], 0)];
  }));
};

export const scatterAdd: Kernels['scatterAdd'] = (out, dim, index, src) => {
  const ov = load(out);
  const iv = load(index);
  const sv = load(src);
  const os = contiguousStrides(out.layout.shape);
  const is = contiguousStrides(index.layout.shape);
  const size = out.layout.shape[dim];
  iv.forEach((ix, i) => {
    checkIndex('scatterAdd', ix, size);
    const pos = unravel(i, is, index.layout.shape);
    pos[dim] = ix;
    ov[pos.reduce((s, p, d) => s + p * os[d], 0)] += sv[i];
  });
  store(out, ov);
};

export const indexSelect: Kernels['indexSelect'] = (x, dim, index, out) => {
  const xv = load(x);
  const iv = load(index);
  const xs = contiguousStrides(x.layout.shape);
  const os = contiguousStrides(out.layout.shape);
  const size = x.layout.shape[dim];
  iv.forEach((ix) => checkIndex('indexSelect', ix, size));
  store(out, Float64Array.from({ length: out.layout.numel }, (_, i) => {
    const pos = unravel(i, os, out.layout.shape);
    const ix = iv[pos[dim]];
    pos[dim] = ix;
    return xv[pos.reduce((s, p, d) => s + p * xs[d], 0)];
  }));
};

export const indexAdd: Kernels['indexAdd'] = (out, dim, index, src) => {
  const ov = load(out);
  const iv = load(index);
  const sv = load(src);
  const os = contiguousStrides(out.layout.shape);
  const ss = contiguousStrides(src.layout.shape);
  const size = out.layout.shape[dim];
  iv.forEach((ix) => checkIndex('indexAdd', ix, size));
  sv.forEach((v, i) => {
    const pos = unravel(i, ss, src.layout.shape);
    const ix = iv[pos[dim]];
    pos[dim] = ix;
    ov[pos.reduce((s, p, d) => s + p * os[d], 0)] += v;
  });
  store(out, ov);
};

/** out[t] = Σ_{s: token[s] = t} w[s] y[s] (Kernels['moeCombine']), slots added in order. */
export const moeCombine: NonNullable<Kernels['moeCombine']> = (out, token, y, w) => {
  const [N, D] = out.layout.shape;
  const [tv, yv, wv] = [load(token), load(y), load(w)];
  tv.forEach((t) => checkIndex('moeCombine', t, N));
  const ov = new Float64Array(N * D);
  tv.forEach((t, s) => {
    for (let d = 0; d < D; d++) ov[t * D + d] += wv[s] * yv[s * D + d];
  });
  store(out, ov);
};

/** dy[s] = w[s] g[token[s]], dw[s] = Σ_d g[token[s], d] y[s, d] (Kernels['moeCombineBackward']). */
export const moeCombineBackward: NonNullable<Kernels['moeCombineBackward']> = (g, token, y, w, dy, dw) => {
  const D = g.layout.shape[1];
  const [gv, tv, yv, wv] = [load(g), load(token), load(y), load(w)];
  const dyv = new Float64Array(yv.length);
  const dwv = new Float64Array(wv.length);
  tv.forEach((t, s) => {
    for (let d = 0; d < D; d++) {
      dyv[s * D + d] = wv[s] * gv[t * D + d];
      dwv[s] += gv[t * D + d] * yv[s * D + d];
    }
  });
  if (dy) store(dy, dyv);
  if (dw) store(dw, dwv);
};
