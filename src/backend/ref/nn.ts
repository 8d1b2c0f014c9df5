// Reference fused kernels (softmax, norms, gated activations, cross-entropy, rotary), row by row in float64.
// The formulas here are the ones src/ops/fused/*.ts document; native kernels must match them.
import type { Kernels } from '../kernels.js';
import { UNARY_MATH } from './math.js';
import { load, store } from './storage.js';

const lastDim = (shape: readonly number[]): number => shape[shape.length - 1] ?? 1;

export const softmax: Kernels['softmax'] = (x, out, log) => {
  const v = load(x);
  const D = lastDim(x.layout.shape);
  const res = new Float64Array(v.length);
  for (let r = 0; r < v.length / D; r++) {
    const row = v.subarray(r * D, (r + 1) * D);
    const m = Math.max(...row);
    let s = 0;
    for (const z of row) s += Math.exp(z - m);
    for (let j = 0; j < D; j++) res[r * D + j] = log ? row[j] - m - Math.log(s) : Math.exp(row[j] - m) / s;
  }
  store(out, res);
};

export const softmaxBackward: Kernels['softmaxBackward'] = (y, dy, dx, log) => {
  const yv = load(y);
  const gv = load(dy);
  const D = lastDim(y.layout.shape);
  const res = new Float64Array(yv.length);
  for (let r = 0; r < yv.length / D; r++) {
    let dot = 0;
    for (let j = r * D; j < (r + 1) * D; j++) dot += log ? gv[j] : gv[j] * yv[j];
    // softmax: dx = y (dy - sum(dy y)); log-softmax: dx = dy - exp(y) sum(dy)
    for (let j = r * D; j < (r + 1) * D; j++) res[j] = log ? gv[j] - Math.exp(yv[j]) * dot : yv[j] * (gv[j] - dot);
  }
  store(dx, res);
};

export const rmsNorm: Kernels['rmsNorm'] = (x, weight, eps, offset, out, rstd) => {
  const v = load(x);
  const w = weight ? load(weight) : null;
  const D = lastDim(x.layout.shape);
  const rows = v.length / D;
  const res = new Float64Array(v.length);
  const rs = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let j = 0; j < D; j++) ss += v[r * D + j] ** 2;
    rs[r] = 1 / Math.sqrt(ss / D + eps);
    for (let j = 0; j < D; j++) res[r * D + j] = v[r * D + j] * rs[r] * (w ? offset + w[j] : 1);
  }
  store(out, res);
  store(rstd, rs);
};

export const rmsNormBackward: Kernels['rmsNormBackward'] = (x, weight, offset, rstd, dy, dx, dweight) => {
  const v = load(x);
  const w = weight ? load(weight) : null;
  const rs = load(rstd);
  const g = load(dy);
  const D = lastDim(x.layout.shape);
  const res = new Float64Array(v.length);
  const dw = new Float64Array(D);
  for (let r = 0; r < rs.length; r++) {
    // xhat = x rstd, gw = dy (offset + w): dx = rstd (gw - xhat mean(gw xhat)), dw = sum_rows dy xhat
    let dot = 0;
    for (let j = 0; j < D; j++) dot += g[r * D + j] * (w ? offset + w[j] : 1) * v[r * D + j] * rs[r];
    for (let j = 0; j < D; j++) {
      const i = r * D + j;
      const xhat = v[i] * rs[r];
      res[i] = rs[r] * (g[i] * (w ? offset + w[j] : 1) - (xhat * dot) / D);
      dw[j] += g[i] * xhat;
    }
  }
  store(dx, res);
  if (dweight) store(dweight, dw);
};

export const layerNorm: Kernels['layerNorm'] = (x, weight, bias, eps, out, mean, rstd) => {
  const v = load(x);
  const w = weight ? load(weight) : null;
  const b = bias ? load(bias) : null;
  const D = lastDim(x.layout.shape);
  const rows = v.length / D;
  const res = new Float64Array(v.length);
  const mu = new Float64Array(rows);
  const rs = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let j = 0; j < D; j++) s += v[r * D + j];
    mu[r] = s / D;
    let ss = 0;
    for (let j = 0; j < D; j++) ss += (v[r * D + j] - mu[r]) ** 2;
    rs[r] = 1 / Math.sqrt(ss / D + eps);
    for (let j = 0; j < D; j++) res[r * D + j] = (v[r * D + j] - mu[r]) * rs[r] * (w ? w[j] : 1) + (b ? b[j] : 0);
  }
  store(out, res);
  store(mean, mu);
  store(rstd, rs);
};

export const layerNormBackward: Kernels['layerNormBackward'] = (x, weight, mean, rstd, dy, dx, dweight, dbias) => {
  const v = load(x);
  const w = weight ? load(weight) : null;
  const mu = load(mean);
  const rs = load(rstd);
  const g = load(dy);
  const D = lastDim(x.layout.shape);
  const res = new Float64Array(v.length);
  const dw = new Float64Array(D);
  const db = new Float64Array(D);
  for (let r = 0; r < rs.length; r++) {
    // gw = dy w: dx = rstd (gw - mean(gw) - xhat mean(gw xhat))
    let sg = 0;
    let sgx = 0;
    for (let j = 0; j < D; j++) {
      const gw = g[r * D + j] * (w ? w[j] : 1);
      sg += gw;
      sgx += gw * (v[r * D + j] - mu[r]) * rs[r];
    }
    for (let j = 0; j < D; j++) {
      const i = r * D + j;
      const xhat = (v[i] - mu[r]) * rs[r];
      res[i] = rs[r] * (g[i] * (w ? w[j] : 1) - sg / D - (xhat * sgx) / D);
      dw[j] += g[i] * xhat;
      db[j] += g[i];
    }
  }
  store(dx, res);
  if (dweight) store(dweight, dw);
  if (dbias) store(dbias, db);
};

export const crossEntropy: Kernels['crossEntropy'] = (logits, target, opts, loss, lse) => {
  const x = load(logits);
  const t = load(target);
  const V = lastDim(logits.layout.shape);
  const N = t.length;
  const l = new Float64Array(N);
  const z = new Float64Array(N);
  for (let r = 0; r < N; r++) {
    const row = x.subarray(r * V, (r + 1) * V);
    const m = Math.max(...row);
    let s = 0;
    let sum = 0;
    for (const v of row) {
      s += Math.exp(v - m);
      sum += v;
    }
    z[r] = m + Math.log(s);
    if (t[r] === opts.ignoreIndex) continue;
    if (!(t[r] >= 0 && t[r] < V)) throw new Error(`crossEntropy: target ${t[r]} out of range for ${V} classes`);
    const e = opts.labelSmoothing;
    l[r] = (1 - e) * (z[r] - row[t[r]]) + e * (z[r] - sum / V);
  }
  store(loss, l);
  store(lse, z);
};

export const crossEntropyBackward: Kernels['crossEntropyBackward'] = (logits, target, lse, dloss, opts, dlogits) => {
  const x = load(logits);
  const t = load(target);
  const z = load(lse);
  const g = load(dloss);
  const V = lastDim(logits.layout.shape);
  const res = new Float64Array(x.length);
  const e = opts.labelSmoothing;
  for (let r = 0; r < t.length; r++) {
    if (t[r] === opts.ignoreIndex) continue;
    for (let j = 0; j < V; j++)
      res[r * V + j] = g[r] * (Math.exp(x[r * V + j] - z[r]) - (j === t[r] ? 1 - e : 0) - e / V);
  }
  store(dlogits, res);
};

export const rope: Kernels['rope'] = (x, cos, sin, out, opts) => {
  const v = load(x);
  const [B, H, T, hd] = x.layout.shape;
  const half = hd / 2;
  const c = load(cos);
  const s = load(sin);
  const cb = cos.layout.shape[0] === 1 ? 0 : 1; // cos/sin may be shared across the batch
  const res = new Float64Array(v.length);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let t = 0; t < T; t++)
        for (let i = 0; i < half; i++) {
          const base = ((b * H + h) * T + t) * hd;
          const [i1, i2] = opts.interleaved ? [base + 2 * i, base + 2 * i + 1] : [base + i, base + i + half];
          const ct = c[(b * cb * T + t) * half + i];
          const st = (opts.inverse ? -1 : 1) * s[(b * cb * T + t) * half + i];
          res[i1] = v[i1] * ct - v[i2] * st;
          res[i2] = v[i2] * ct + v[i1] * st;
        }
  store(out, res);
};

// out = act(gate) up; dgate = dy up act'(gate), dup = dy act(gate)
export const glu: Kernels['glu'] = (act, gate, up, out) => {
  const [g, u] = [load(gate), load(up)];
  const { f } = UNARY_MATH[act];
  store(out, g.map((x, i) => f(x, 0, 0) * u[i]));
};

export const gluBackward: Kernels['gluBackward'] = (act, gate, up, dy, dgate, dup) => {
  const [g, u, d] = [load(gate), load(up), load(dy)];
  const { f, df } = UNARY_MATH[act];
  if (dgate) store(dgate, g.map((x, i) => d[i] * u[i] * df(x, 0, 0)));
  if (dup) store(dup, g.map((x, i) => d[i] * f(x, 0, 0)));
};
