// The CPU backend's decode-step kernels (DecodeKernels): one packed call each into native/decode_qkv.cc,
// decode_mlp.cc and decode_residual.cc, and the packing of a QuantWeight that they share with quant_linear (the order
// native/quant.cc's read_weight() reads).
import { type DecodeKernels, GLU_ACTIVATIONS, type QkvPart, type QuantWeight, type View } from '../kernels.js';
import type { NativeView, Packer } from './native.js';

/** The kind codes native/quant_weight.h reads. */
const QUANT_KINDS = ['4bit', 'int8', 'bf16'] as const;

/** Packs w's fields (kind, N, K, data, code, blockSize, scales, nested...) and returns the packer. */
export function packQuantWeight(p: Packer, w: QuantWeight, nv: (v: View | null) => NativeView | null): Packer {
  p.num(QUANT_KINDS.indexOf(w.kind)).num(w.N).num(w.K).view(nv(w.data)).view(nv(w.code)).num(w.blockSize).view(nv(w.scales));
  return w.nested
    ? p.view(nv(w.nested.code)).view(nv(w.nested.absmax)).num(w.nested.offset).num(w.nested.blockSize)
    : p.view(null);
}

export function makeDecodeKernels(p: Packer, nv: (v: View | null) => NativeView | null): DecodeKernels {
  /** the parts, in the order native/decode_parts.cc reads them */
  const projection = (parts: readonly QkvPart[]): Packer => {
    p.num(parts.length);
    for (const part of parts) {
      if (part.quant) packQuantWeight(p.num(1), part.quant, nv);
      else p.num(0).view(nv(part.weight));
      p.view(nv(part.bias));
    }
    return p;
  };
  const normProjection = (x: View, normWeight: View | null, eps: number, offset: number, parts: readonly QkvPart[]): Packer => {
    p.view(nv(x)).view(nv(normWeight)).num(eps).num(offset);
    return projection(parts);
  };
  return {
    maxQuantRows: 8, // native/quant_weight.h kGemvMaxRows
    rmsNormQkvRope(x, normWeight, eps, offset, parts, cos, sin, heads, out) {
      normProjection(x, normWeight, eps, offset, parts).view(nv(cos)).view(nv(sin))
        .num(heads.numHeads).num(heads.numKvHeads).num(heads.headDim).num(heads.interleaved ? 1 : 0).view(nv(out)).call('rms_norm_qkv_rope');
    },
    rmsNormGateUpGlu(x, normWeight, eps, offset, parts, act, out) {
      normProjection(x, normWeight, eps, offset, parts).num(GLU_ACTIVATIONS.indexOf(act)).view(nv(out)).call('rms_norm_gate_up_glu');
    },
    linearResidual(x, parts, residual, out) {
      p.view(nv(x));
      projection(parts).view(nv(residual)).view(nv(out)).call('linear_residual');
    },
  };
}
