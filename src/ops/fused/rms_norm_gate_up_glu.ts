// Fused decode-step MLP input: RMSNorm, the gate|up projection and the gated activation in one
// kernel call (native/decode_mlp.cc). Equals rmsNormGateUpGluComposite, HF's LlamaMLP up to its
// down projection:
//   xn = x / sqrt(mean(x²) + eps) * (offset + g)
//   [gate | up] = xn [Wgate | Wup]ᵀ + biases                 (one merged weight, or the two apart)
//   out = act(gate) * up                                      (act: silu, gelu_tanh, gelu_erf)
// Decode-only like rms_norm_qkv_rope.ts: no backward (throws when a gradient would be needed), the
// composite wherever the kernel cannot take the operands.
import type { GluActivation } from '../../backend/kernels.js';
import { shapeStr } from '../../tensor/layout.js';
import { tidy } from '../../tensor/scope.js';
import type { Tensor } from '../../tensor/tensor.js';
import { emptyLike } from '../dispatch.js';
import { glu } from '../glu.js';
import { narrow } from '../view.js';
import { type DecodePart, type RmsNormParams, asRows, checkDecodeOperands, decodeKernelsFor, kernelParts, normProject, partOutFeatures, xRows } from './decode_projection.js';

/**
 * The same maths through separate ops (the fallback, and what the fused kernel is tested against).
 * @example const h = rmsNormGateUpGluComposite(x, norm, [{ weight: wGate, bias: null }, { weight: wUp, bias: null }], 'silu')
 */
export function rmsNormGateUpGluComposite(x: Tensor, norm: RmsNormParams, parts: readonly DecodePart[], act: GluActivation): Tensor {
  return tidy(() => {
    const ys = normProject(x, norm, parts);
    const F = ys.reduce((n, y) => n + y.shape[2], 0) / 2;
    if (ys.length === 2) return glu(ys[0], ys[1], act);
    return glu(narrow(ys[0], 2, 0, F), narrow(ys[0], 2, F, F), act);
  });
}

/**
 * x [B, T, D] -> act(gate) * up [B, T, F] in one kernel call where the backend has it; the parts
 * give gate's F outputs, then up's (one merged [2F, D] weight, or gate and up apart); no gradients.
 * @example const h = rmsNormGateUpGlu(x, { weight: g, eps: 1e-5, offset: 0 }, [{ weight: mergedGateUp, bias: null }], 'silu')
 */
export function rmsNormGateUpGlu(x: Tensor, norm: RmsNormParams, parts: readonly DecodePart[], act: GluActivation): Tensor {
  const where = `rmsNormGateUpGlu: x ${shapeStr(x.shape)}`;
  const N = checkDecodeOperands('rmsNormGateUpGlu', where, x, norm, parts, []);
  if (N % 2 !== 0 || parts.length > 2 || (parts.length === 2 && partOutFeatures(parts[0]) !== N / 2))
    throw new Error(`${where}: the parts must be one merged [2F, D] gate|up weight or gate and up [F, D] each (got ${N} outputs in ${parts.length} parts)`);
  const kernels = decodeKernelsFor(x, norm, parts, []);
  if (!kernels) return rmsNormGateUpGluComposite(x, norm, parts, act);
  const [B, T] = x.shape;
  const out = emptyLike(x, [B, T, N / 2]);
  tidy(() => kernels.rmsNormGateUpGlu(xRows(x), norm.weight, norm.eps, norm.offset, kernelParts(parts), act, asRows(out, B * T, N / 2)));
  return out;
}
