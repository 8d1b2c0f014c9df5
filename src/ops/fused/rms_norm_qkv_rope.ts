// Fused decode-step attention input: RMSNorm, the Q|K|V projection and RoPE in one kernel call
// (native/decode_qkv.cc). Equals rmsNormQkvRopeComposite, HF's Llama attention input:
//   xn = x / sqrt(mean(x²) + eps) * (offset + g)
//   [q | k | v] = xn [Wq | Wk | Wv]ᵀ + [bq | bk | bv]          (the parts' rows, concatenated)
//   q, k = rope(q, cos, sin), rope(k, cos, sin)               (v is not rotated)
// Decode-only: it has no backward and throws when a gradient would be needed; it runs where the
// backend has DecodeKernels, every operand is float32 (quantized parts aside) and, with a quantized
// part, the rows fit the decode GEMV; the composite everywhere else.
import type { QkvHeads, View } from '../../backend/kernels.js';
import { shapeStr } from '../../tensor/layout.js';
import { tidy } from '../../tensor/scope.js';
import type { Tensor } from '../../tensor/tensor.js';
import { emptyLike } from '../dispatch.js';
import { cat } from '../indexing.js';
import { rope } from '../rope.js';
import { contiguous, expand, narrow, reshape, transpose } from '../view.js';
import { type DecodePart, type RmsNormParams, asRows, checkDecodeOperands, decodeKernelsFor, kernelParts, normProject, xRows } from './decode_projection.js';

export interface QkvRope {
  /** [B, H, T, hd] */
  q: Tensor;
  /** [B, Hkv, T, hd] */
  k: Tensor;
  /** [B, Hkv, T, hd] */
  v: Tensor;
}

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
export function rmsNormQkvRopeComposite(x: Tensor, norm: RmsNormParams, parts: readonly DecodePart[], cos: Tensor, sin: Tensor, h: QkvHeads): QkvRope {
  return tidy(() => {
    const ys = normProject(x, norm, parts);
    const { q, k, v } = splitHeads(ys.length === 1 ? ys[0] : cat(ys, 2), h);
    return { q: rope(q, cos, sin, { interleaved: h.interleaved }), k: rope(k, cos, sin, { interleaved: h.interleaved }), v };
  });
}

/**
 * x [B, T, D] -> RoPE'd q [B, H, T, hd] and k, v [B, Hkv, T, hd] (cos/sin [B|1, T, hd/2]) in one
 * kernel call where the backend has it; no gradients (decoding).
 * @example const { q, k, v } = rmsNormQkvRope(x, { weight: g, eps: 1e-5, offset: 0 }, [{ weight: merged, bias }], cos, sin, heads)
 */
export function rmsNormQkvRope(x: Tensor, norm: RmsNormParams, parts: readonly DecodePart[], cos: Tensor, sin: Tensor, h: QkvHeads): QkvRope {
  const { numHeads: H, numKvHeads: Hkv, headDim: hd } = h;
  const where = `rmsNormQkvRope: x ${shapeStr(x.shape)}, heads H=${H} Hkv=${Hkv} hd=${hd}`;
  const N = checkDecodeOperands('rmsNormQkvRope', where, x, norm, parts, [cos, sin]);
  const [B, T] = x.shape;
  if (N !== (H + 2 * Hkv) * hd) throw new Error(`${where}: the weight parts give ${N} outputs, (H + 2 Hkv) hd = ${(H + 2 * Hkv) * hd}`);
  const tableOk = cos.ndim === 3 && (cos.shape[0] === B || cos.shape[0] === 1) && cos.shape[1] === T && cos.shape[2] === hd / 2 && sin.shape.every((s, i) => s === cos.shape[i]);
  if (!tableOk) throw new Error(`${where}: cos ${shapeStr(cos.shape)} / sin ${shapeStr(sin.shape)} must be [B|1, T, hd/2]`);
  const kernels = decodeKernelsFor(x, norm, parts, [cos, sin]);
  if (!kernels) return rmsNormQkvRopeComposite(x, norm, parts, cos, sin, h);
  const y = emptyLike(x, [B, T, N]);
  tidy(() => {
    // every row gets its own angle: a [1, T] table is expanded over the batch, then made [B T, hd/2]
    const table = (t: Tensor): View => asRows(contiguous(t.shape[0] === B ? t : expand(t, [B, T, hd / 2])), B * T, hd / 2);
    kernels.rmsNormQkvRope(xRows(x), norm.weight, norm.eps, norm.offset, kernelParts(parts), table(cos), table(sin), h, asRows(y, B * T, N));
  });
  return splitHeads(y, h);
}
