// Fused decode-step attention input: RMSNorm, the Q|K|V projection and RoPE in one kernel call
// (native/decode_qkv.cc). Equals rmsNormQkvRopeComposite, HF's Llama attention input:
//   xn = x / sqrt(mean(x²) + eps) * (offset + g)
//   [q | k | v] = xn [Wq | Wk | Wv]ᵀ + [bq | bk | bv]          (the parts' rows, concatenated)
//   q, k = rope(q, cos, sin), rope(k, cos, sin)               (v is not rotated)
// Decode-only: it has no backward and throws when a gradient would be needed; it runs where the
// backend has DecodeKernels, x and the float parts are float32 and (with a quantized part) the
// rows fit the decode GEMV, and the composite everywhere else.
import { backendOf, withLayout } from '../../backend/index.js';
import type { QkvHeads, QkvPart, View } from '../../backend/kernels.js';
import { autocastDtype } from '../../tensor/autocast.js';
import { Layout, shapeStr } from '../../tensor/layout.js';
import { tidy } from '../../tensor/scope.js';
import { Tensor } from '../../tensor/tensor.js';
import { emptyLike, inputs, needsGrad } from '../dispatch.js';
import { add } from '../elementwise.js';
import { cat } from '../indexing.js';
import { linear } from '../matmul.js';
import { rmsNorm } from '../norm.js';
import { rope } from '../rope.js';
import { contiguous, expand, narrow, reshape, transpose } from '../view.js';
import { type QuantTensors, quantLinear } from './quant_linear.js';

/** One block of the projection's output rows: a float weight [N, K] or a quantized one, and its bias [N]. */
export interface QkvWeightPart {
  weight: Tensor | QuantTensors;
  bias: Tensor | null;
}

/** The RMSNorm in front of the projection (the layer's input_layernorm). */
export interface RmsNormParams {
  weight: Tensor | null;
  eps: number;
  offset: number;
}

export interface QkvRope {
  /** [B, H, T, hd] */
  q: Tensor;
  /** [B, Hkv, T, hd] */
  k: Tensor;
  /** [B, Hkv, T, hd] */
  v: Tensor;
}

const outFeatures = (p: QkvWeightPart): number => (p.weight instanceof Tensor ? p.weight.shape[0] : p.weight.N);

/** y [B, T, (H + 2 Hkv) hd] split into q, k, v heads (views of y). */
function splitHeads(y: Tensor, h: QkvHeads): QkvRope {
  const [B, T] = y.shape;
  const { numHeads: H, numKvHeads: Hkv, headDim: hd } = h;
  const heads = (start: number, n: number): Tensor => transpose(reshape(narrow(y, 2, start, n * hd), [B, T, n, hd]), 1, 2);
  return { q: heads(0, H), k: heads(H * hd, Hkv), v: heads((H + Hkv) * hd, Hkv) };
}

/**
 * The same maths through separate ops (the fallback, and what the fused kernel is tested against).
 * @example const { q, k, v } = rmsNormQkvRopeComposite(x, norm, [{ weight: wqkv, bias: null }], cos, sin, heads)
 */
export function rmsNormQkvRopeComposite(x: Tensor, norm: RmsNormParams, parts: readonly QkvWeightPart[], cos: Tensor, sin: Tensor, h: QkvHeads): QkvRope {
  return tidy(() => {
    const xn = rmsNorm(x, norm.weight, { eps: norm.eps, offset: norm.offset });
    const ys = parts.map((p) => {
      const y = p.weight instanceof Tensor ? linear(xn, p.weight, null) : quantLinear(xn, p.weight);
      return p.bias ? add(y, p.bias) : y;
    });
    const { q, k, v } = splitHeads(ys.length === 1 ? ys[0] : cat(ys, 2), h);
    return { q: rope(q, cos, sin, { interleaved: h.interleaved }), k: rope(k, cos, sin, { interleaved: h.interleaved }), v };
  });
}

/** Why the fused kernel cannot take these operands (null when it can). */
function fusedBlocker(x: Tensor, norm: RmsNormParams, parts: readonly QkvWeightPart[], cos: Tensor): string | null {
  const kernels = backendOf(x).decode;
  if (!kernels) return 'no decode kernels on this backend';
  if (autocastDtype()) return 'autocast';
  const f32 = (t: Tensor | null): boolean => !t || t.dtype === 'float32';
  if (!f32(x) || !f32(norm.weight) || !f32(cos) || !parts.every((p) => f32(p.bias) && (!(p.weight instanceof Tensor) || f32(p.weight))))
    return 'a non-float32 operand';
  const rows = x.numel / x.shape[2];
  if (parts.some((p) => !(p.weight instanceof Tensor)) && rows > kernels.maxQuantRows) return `${rows} rows (the decode GEMV takes ${kernels.maxQuantRows})`;
  return null;
}

/**
 * x [B, T, D] -> RoPE'd q [B, H, T, hd] and k, v [B, Hkv, T, hd] (cos/sin [B|1, T, hd/2]) in one
 * kernel call where the backend has it; no gradients (decoding).
 * @example const { q, k, v } = rmsNormQkvRope(x, { weight: g, eps: 1e-5, offset: 0 }, [{ weight: merged, bias }], cos, sin, heads)
 */
export function rmsNormQkvRope(x: Tensor, norm: RmsNormParams, parts: readonly QkvWeightPart[], cos: Tensor, sin: Tensor, h: QkvHeads): QkvRope {
  const weights = parts.flatMap((p) => (p.weight instanceof Tensor ? [p.weight] : [p.weight.data, p.weight.scales, p.weight.code]));
  inputs('rmsNormQkvRope', x, norm.weight, cos, sin, ...weights, ...parts.map((p) => p.bias));
  const { numHeads: H, numKvHeads: Hkv, headDim: hd } = h;
  const N = parts.reduce((n, p) => n + outFeatures(p), 0);
  const [B, T, D] = x.shape;
  const where = `rmsNormQkvRope: x ${shapeStr(x.shape)}, heads H=${H} Hkv=${Hkv} hd=${hd}`;
  if (x.ndim !== 3) throw new Error(`${where}: x must be [B, T, D]`);
  if (N !== (H + 2 * Hkv) * hd) throw new Error(`${where}: the weight parts give ${N} outputs, (H + 2 Hkv) hd = ${(H + 2 * Hkv) * hd}`);
  for (const p of parts) {
    const K = p.weight instanceof Tensor ? p.weight.shape[1] : p.weight.K;
    if (K !== D) throw new Error(`${where}: a weight part takes ${K} input features, x has ${D}`);
    if (p.bias && (p.bias.ndim !== 1 || p.bias.shape[0] !== outFeatures(p))) throw new Error(`${where}: bias ${shapeStr(p.bias.shape)} must be [${outFeatures(p)}]`);
  }
  const tableOk = cos.ndim === 3 && (cos.shape[0] === B || cos.shape[0] === 1) && cos.shape[1] === T && cos.shape[2] === hd / 2 && sin.shape.every((s, i) => s === cos.shape[i]);
  if (!tableOk) throw new Error(`${where}: cos ${shapeStr(cos.shape)} / sin ${shapeStr(sin.shape)} must be [B|1, T, hd/2]`);
  if (needsGrad(x, norm.weight, ...weights, ...parts.map((p) => p.bias)))
    throw new Error('rmsNormQkvRope: decode-only (no backward); call it under noGrad or use rmsNormQkvRopeComposite');
  if (fusedBlocker(x, norm, parts, cos)) return rmsNormQkvRopeComposite(x, norm, parts, cos, sin, h);
  const M = B * T;
  const rows = (t: Tensor, cols: number): View => withLayout(t, new Layout([M, cols], undefined, t.layout.offset));
  const y = emptyLike(x, [B, T, N]);
  tidy(() => {
    // every row gets its own angle: a [1, T] table is expanded over the batch, then made [M, hd/2]
    const table = (t: Tensor): View => rows(contiguous(t.shape[0] === B ? t : expand(t, [B, T, hd / 2])), hd / 2);
    const kparts: QkvPart[] = parts.map((p) => (p.weight instanceof Tensor ? { weight: contiguous(p.weight), bias: p.bias } : { quant: p.weight, bias: p.bias }));
    backendOf(x).decode!.rmsNormQkvRope(rows(contiguous(x), D), norm.weight, norm.eps, norm.offset, kparts, table(cos), table(sin), h, rows(y, N));
  });
  return splitHeads(y, h);
}
