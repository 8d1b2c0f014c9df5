// Reference quantized matmul: decode the whole weight in float64 (the oracle may materialise it),
// then textbook loops. Same formats and checks as native/quant.cc.
import { shapeStr } from '../../tensor/layout.js';
import type { Kernels, QuantWeight, View } from '../kernels.js';
import { load, store } from './storage.js';

function vector(op: string, what: string, v: View, n: number): Float64Array {
  if (v.layout.numel !== n) throw new Error(`${op}: ${what} ${shapeStr(v.layout.shape)} must have ${n} elements`);
  return load(v);
}

/** W [N, K] row-major in float64. */
function decode(op: string, w: QuantWeight): Float64Array {
  const n = w.N * w.K;
  const out = new Float64Array(n);
  if (w.kind === 'bf16') {
    if (w.data.dtype !== 'bfloat16') throw new Error(`${op}: a bf16 weight must be bfloat16, got ${w.data.dtype}`);
    return vector(op, 'bf16 weight', w.data, n);
  }
  if (w.kind === 'int8') {
    const q = vector(op, 'int8 weight', w.data, n);
    const scb = vector(op, 'SCB', w.scales, w.N);
    for (let i = 0; i < n; i++) out[i] = (q[i] * scb[Math.floor(i / w.K)]) / 127;
    return out;
  }
  const bs = w.blockSize;
  if (!Number.isInteger(Math.log2(bs))) throw new Error(`${op}: blockSize ${bs} must be a power of two`);
  if (!w.code) throw new Error(`${op}: a 4-bit weight needs its 16-entry code table`);
  const packed = vector(op, 'packed weight', w.data, Math.ceil(n / 2));
  const code = vector(op, 'code table', w.code, 16);
  const blocks = Math.ceil(n / bs);
  let absmax = vector(op, 'absmax', w.scales, blocks);
  if (w.nested) {
    const { offset, blockSize } = w.nested;
    const nc = vector(op, 'nested code', w.nested.code, 256);
    const na = vector(op, 'nested absmax', w.nested.absmax, Math.ceil(blocks / blockSize));
    absmax = absmax.map((c, b) => nc[c] * na[Math.floor(b / blockSize)] + offset);
  }
  for (let i = 0; i < n; i++) {
    const byte = packed[i >> 1];
    out[i] = code[i % 2 === 0 ? byte >> 4 : byte & 15] * absmax[Math.floor(i / bs)];
  }
  return out;
}

function rowsOf(op: string, what: string, v: View, cols: number): number {
  const s = v.layout.shape;
  if (s.length !== 2 || s[1] !== cols) throw new Error(`${op}: ${what} ${shapeStr(s)} must be [rows, ${cols}]`);
  return s[0];
}

export const quantLinear: Kernels['quantLinear'] = (x, w, y) => {
  const M = rowsOf('quant_linear', 'x', x, w.K);
  if (rowsOf('quant_linear', 'out', y, w.N) !== M) throw new Error(`quant_linear: out ${shapeStr(y.layout.shape)} must have ${M} rows`);
  const W = decode('quant_linear', w);
  const xv = load(x);
  const out = new Float64Array(M * w.N);
  for (let m = 0; m < M; m++)
    for (let n = 0; n < w.N; n++) {
      let s = 0;
      for (let k = 0; k < w.K; k++) s += xv[m * w.K + k] * W[n * w.K + k];
      out[m * w.N + n] = s;
    }
  store(y, out);
};

export const quantLinearBackward: Kernels['quantLinearBackward'] = (dy, w, dx) => {
  const M = rowsOf('quant_linear_backward', 'dy', dy, w.N);
  if (rowsOf('quant_linear_backward', 'dx', dx, w.K) !== M)
    throw new Error(`quant_linear_backward: dx ${shapeStr(dx.layout.shape)} must have ${M} rows`);
  const W = decode('quant_linear_backward', w);
  const g = load(dy);
  const out = new Float64Array(M * w.K);
  for (let m = 0; m < M; m++)
    for (let n = 0; n < w.N; n++) {
      const gv = g[m * w.N + n];
      for (let k = 0; k < w.K; k++) out[m * w.K + k] += gv * W[n * w.K + k];
    }
  store(dx, out);
};
