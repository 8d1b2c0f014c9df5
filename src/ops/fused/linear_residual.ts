// Fused decode-step output projection with the residual sum (native/decode_residual.cc). Equals
// linearResidualComposite: out = x Wᵀ + b + residual, for the o_proj and down_proj of a pre-norm
// decoder layer (h = x + o_proj(attn), out = h + down(mlp)). Decode-only like the other fused
// decode ops: no backward (throws when a gradient would be needed), the composite wherever the
// kernel cannot take the operands.
import { shapeStr } from '../../tensor/layout.js';
import { tidy } from '../../tensor/scope.js';
import type { Tensor } from '../../tensor/tensor.js';
import { emptyLike } from '../dispatch.js';
import { add } from '../elementwise.js';
import { contiguous } from '../view.js';
import { type DecodePart, asRows, checkDecodeOperands, decodeKernelsFor, kernelParts, normProject, xRows } from './decode_projection.js';

/**
 * The same maths through separate ops (the fallback, and what the fused kernel is tested against).
 * @example const h = linearResidualComposite(o, [{ weight: wo, bias: null }], x)
 */
export function linearResidualComposite(x: Tensor, parts: readonly DecodePart[], residual: Tensor): Tensor {
  return tidy(() => add(residual, normProject(x, null, parts)[0]));
}

/**
 * x [B, T, K] -> x Wᵀ + b + residual [B, T, N] in one kernel call where the backend has it (one
 * part: the projection's weight, float32 or quantized); no gradients (decoding).
 * @example const h = linearResidual(o, [{ weight: oProjQuant, bias: null }], x)
 */
export function linearResidual(x: Tensor, parts: readonly DecodePart[], residual: Tensor): Tensor {
  const where = `linearResidual: x ${shapeStr(x.shape)}, residual ${shapeStr(residual.shape)}`;
  const norm = { weight: null, eps: 0, offset: 0 };
  const N = checkDecodeOperands('linearResidual', where, x, norm, parts, [residual]);
  const [B, T] = x.shape;
  if (parts.length !== 1 || residual.ndim !== 3 || residual.shape[0] !== B || residual.shape[1] !== T || residual.shape[2] !== N)
    throw new Error(`${where}: one weight part of [N, K] with a residual [B, T, N] (got ${parts.length} parts giving N=${N})`);
  const kernels = decodeKernelsFor(x, norm, parts, [residual]);
  if (!kernels) return linearResidualComposite(x, parts, residual);
  const out = emptyLike(x, [B, T, N]);
  tidy(() => kernels.linearResidual(xRows(x), kernelParts(parts), asRows(contiguous(residual), B * T, N), asRows(out, B * T, N)));
  return out;
}
