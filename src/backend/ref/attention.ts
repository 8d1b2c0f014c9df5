// Reference attention: the naive formula, one query row at a time in float64.
//   s_j = softcap(scale q.k_j) + mask_ij   (causal / window entries: -inf)
//   p = softmax(s), lse = logsumexp(s), p~_j = p_j keep_j / (1 - dropout), out = sum_j p~_j v_j
// Backward (FlashAttention-2's recurrences): dP_j = keep_j/(1-dropout) dout.v_j,
// D = dout.out, dS_j = p_j (dP_j - D) (times 1 - (s/cap)^2 under soft-capping).
import { fillRandom } from '../../tensor/rng.js';
import type { AttentionOpts, Kernels, View } from '../kernels.js';
import { load, store } from './storage.js';

interface Dims {
  B: number; H: number; Hkv: number; Tq: number; Tk: number; hd: number; hdv: number;
}

function dims(q: View, k: View, v: View): Dims {
  const [B, H, Tq, hd] = q.layout.shape;
  const [, Hkv, Tk] = k.layout.shape;
  return { B, H, Hkv, Tq, Tk, hd, hdv: v.layout.shape[3] };
}

/** Scores of query row (b, h, i) before softmax, and the raw tanh argument for soft-capping. */
function scores(d: Dims, qv: Float64Array, kv: Float64Array, mv: Float64Array | null, mask: View | null, opts: AttentionOpts, b: number, h: number, i: number) {
  const { H, Hkv, Tq, Tk, hd } = d;
  const g = Math.floor(h / (H / Hkv));
  const s = new Float64Array(Tk);
  const shift = Tk - Tq;
  for (let j = 0; j < Tk; j++) {
    if ((opts.causal && j > i + shift) || (opts.window > 0 && j <= i + shift - opts.window)) {
      s[j] = -Infinity;
      continue;
    }
    let dot = 0;
    for (let c = 0; c < hd; c++) dot += qv[((b * H + h) * Tq + i) * hd + c] * kv[((b * Hkv + g) * Tk + j) * hd + c];
    let z = opts.scale * dot;
    if (opts.softcap > 0) z = opts.softcap * Math.tanh(z / opts.softcap);
    if (mv && mask) {
      const [mb, mh] = mask.layout.shape;
      z += mv[(((mb === 1 ? 0 : b) * mh + (mh === 1 ? 0 : h)) * Tq + i) * Tk + j];
    }
    s[j] = z;
  }
  return s;
}

function probs(s: Float64Array): { p: Float64Array; lse: number } {
  const m = Math.max(...s);
  if (m === -Infinity) return { p: new Float64Array(s.length), lse: -Infinity };
  let sum = 0;
  for (const z of s) sum += Math.exp(z - m);
  const lse = m + Math.log(sum);
  return { p: s.map((z) => Math.exp(z - lse)), lse };
}

function keepScale(d: Dims, opts: AttentionOpts): Float64Array | null {
  if (opts.dropout <= 0) return null;
  const u = new Float64Array(d.B * d.H * d.Tq * d.Tk);
  fillRandom(u, 'uniform', opts.seed, opts.counter);
  return u.map((x) => (x >= opts.dropout ? 1 / (1 - opts.dropout) : 0));
}

export const attention: Kernels['attention'] = (q, k, v, mask, opts, out, lse) => {
  const d = dims(q, k, v);
  const [qv, kv, vv] = [load(q), load(k), load(v)];
  const mv = mask ? load(mask) : null;
  const keep = keepScale(d, opts);
  const o = new Float64Array(d.B * d.H * d.Tq * d.hdv);
  const l = new Float64Array(d.B * d.H * d.Tq);
  for (let b = 0; b < d.B; b++)
    for (let h = 0; h < d.H; h++) {
      const g = Math.floor(h / (d.H / d.Hkv));
      for (let i = 0; i < d.Tq; i++) {
        const row = (b * d.H + h) * d.Tq + i;
        const { p, lse: z } = probs(scores(d, qv, kv, mv, mask, opts, b, h, i));
        l[row] = z;
        for (let j = 0; j < d.Tk; j++) {
          const pj = p[j] * (keep ? keep[row * d.Tk + j] : 1);
          for (let c = 0; c < d.hdv; c++) o[row * d.hdv + c] += pj * vv[((b * d.Hkv + g) * d.Tk + j) * d.hdv + c];
        }
      }
    }
  store(out, o);
  store(lse, l);
};

export const attentionBackward: Kernels['attentionBackward'] = (q, k, v, mask, out, _lse, dout, opts, dq, dk, dv) => {
  const d = dims(q, k, v);
  const [qv, kv, vv, ov, gv] = [load(q), load(k), load(v), load(out), load(dout)];
  const mv = mask ? load(mask) : null;
  const keep = keepScale(d, opts);
  const [dqv, dkv, dvv] = [new Float64Array(qv.length), new Float64Array(kv.length), new Float64Array(vv.length)];
  for (let b = 0; b < d.B; b++)
    for (let h = 0; h < d.H; h++) {
      const g = Math.floor(h / (d.H / d.Hkv));
      for (let i = 0; i < d.Tq; i++) {
        const row = (b * d.H + h) * d.Tq + i;
        const s = scores(d, qv, kv, mv, mask, opts, b, h, i);
        const { p } = probs(s);
        let D = 0;
        for (let c = 0; c < d.hdv; c++) D += gv[row * d.hdv + c] * ov[row * d.hdv + c];
        for (let j = 0; j < d.Tk; j++) {
          if (p[j] === 0) continue;
          const kj = (b * d.Hkv + g) * d.Tk + j;
          const kp = keep ? keep[row * d.Tk + j] : 1;
          let dp = 0;
          for (let c = 0; c < d.hdv; c++) {
            dp += gv[row * d.hdv + c] * vv[kj * d.hdv + c];
            dvv[kj * d.hdv + c] += p[j] * kp * gv[row * d.hdv + c];
          }
          let ds = p[j] * (dp * kp - D);
          if (opts.softcap > 0) {
            const capped = mv && mask ? withoutMask(s[j], mv, mask, b, h, i, j, d) : s[j];
            ds *= 1 - (capped / opts.softcap) ** 2;
          }
          for (let c = 0; c < d.hd; c++) {
            dqv[row * d.hd + c] += opts.scale * ds * kv[kj * d.hd + c];
            dkv[kj * d.hd + c] += opts.scale * ds * qv[row * d.hd + c];
          }
        }
      }
    }
  store(dq, dqv);
  store(dk, dkv);
  store(dv, dvv);
};

/** The soft-capped score alone: the full score minus the additive mask entry. */
function withoutMask(s: number, mv: Float64Array, mask: View, b: number, h: number, i: number, j: number, d: Dims): number {
  const [mb, mh] = mask.layout.shape;
  return s - mv[(((mb === 1 ? 0 : b) * mh + (mh === 1 ? 0 : h)) * d.Tq + i) * d.Tk + j];
}
