// Projections that read the same input (a layer's q/k/v, an MLP's gate/up) as one weight for the
// fused decode ops (src/ops/fused/rms_norm_qkv_rope.ts, rms_norm_gate_up_glu.ts): quantized ones of
// one format are concatenated row-wise once, on first use, into buffers of the owning module
// (`qkv_merged_*`, `gate_up_merged_*`; not in the state dict), and their own buffers become views of
// them, so the weight is stored once and a decode step streams it in one GEMV. Float32 Linears are
// passed apart (no copy: their weights may still be trained).
import { Tensor } from '../tensor/tensor.js';
import { tensor } from '../ops/creation.js';
import { cat } from '../ops/indexing.js';
import { narrow } from '../ops/view.js';
import { noGrad } from '../tensor/grad_mode.js';
import { tidy } from '../tensor/scope.js';
import { Linear } from '../nn/layers.js';
import type { Module } from '../nn/module.js';
import type { DecodePart } from '../ops/fused/decode_projection.js';
import { QuantLinear } from './quant_linear.js';

/** The owner's buffer names of a merged projection. */
const mergedNames = (name: string) => ({ qweight: `${name}_merged_qweight`, scales: `${name}_merged_scales` });

const isPlain = (m: unknown, cls: typeof Linear | typeof QuantLinear): boolean => m instanceof cls && m.constructor === cls;

/** Why these QuantLinears cannot share one merged weight (null when they can). */
export function mergeBlocker(layers: readonly QuantLinear[]): string | null {
  const [a] = layers;
  if (!['int8', 'q4', 'bf16'].includes(a.type)) return `type ${a.type} (int8, q4 and bf16 merge)`;
  for (const l of layers) {
    if (l.type !== a.type || l.inFeatures !== a.inFeatures || l.blockSize !== a.blockSize) return 'mixed types or shapes';
    if (l.input_scale) return 'an AWQ input scale';
    if (l.doubleQuant) return 'double quantization';
    // 4-bit: each layer's groups (and bytes) must end at its last row, so the codes and scales concatenate
    if (layers.length > 1 && l.type === 'q4' && (l.outFeatures * l.inFeatures) % l.blockSize !== 0) return `q4 groups of ${l.blockSize} straddle rows of [${l.outFeatures}, ${l.inFeatures}]`;
  }
  return null;
}

/** The op's view of a quantized weight: N rows of `first`'s format in data (and scales). */
const quantPart = (first: QuantLinear, N: number, data: Tensor, scales: Tensor, bias: Tensor | null): DecodePart =>
  ({ weight: first.kernelWeight({ N, data, scales }), bias });

/**
 * The biases of the layers as one [N] tensor, made per call (a few KB) in the caller's scope rather
 * than kept: a bias can change after the merge (loadStateDict copies into it, a trained bias) and the
 * fused op must add today's. A layer without a bias adds zeros. null when none has one.
 */
function concatBias(layers: readonly QuantLinear[]): Tensor | null {
  if (!layers.some((l) => l.bias)) return null;
  const backend = layers[0].qweight.backendName;
  return tidy(() => cat(layers.map((l) => l.bias ?? tensor(new Float32Array(l.outFeatures), { backend })), 0));
}

/**
 * The merged weight registered on `owner`, as a fused-op part; null when none is, or when it no longer
 * holds these layers' weights (a layer replaced or re-quantized after the merge owns other storage).
 */
function registeredPart(owner: Module, name: string, layers: readonly QuantLinear[], N: number): DecodePart | null {
  const names = mergedNames(name);
  const data: unknown = Reflect.get(owner, names.qweight);
  if (!(data instanceof Tensor) || !layers.every((l) => l.qweight.storage === data.storage)) return null;
  return quantPart(layers[0], N, data, (Reflect.get(owner, names.scales) as Tensor | undefined) ?? data, concatBias(layers));
}

/** Concatenates the layers' buffers into `owner`'s merged buffers and makes theirs views of them. */
function mergeInto(owner: Module, name: string, layers: readonly QuantLinear[]): void {
  const names = mergedNames(name);
  noGrad(() => {
    const catBuffers = (name: 'qweight' | 'scales'): Tensor => cat(layers.map((l) => l[name]), 0);
    const data = owner.registerBuffer(names.qweight, catBuffers('qweight'), false, { format: true });
    const scales = layers[0].type === 'bf16' ? null : owner.registerBuffer(names.scales, catBuffers('scales'), false, { format: true });
    let [d0, s0] = [0, 0];
    for (const l of layers) {
      const [dn, sn] = [l.qweight.numel, l.scales.numel];
      const oldData = l.qweight;
      l.registerBuffer('qweight', narrow(data, 0, d0, dn), false, { format: true });
      oldData.dispose();
      if (scales) {
        const oldScales = l.scales;
        l.registerBuffer('scales', narrow(scales, 0, s0, sn), false, { format: true });
        oldScales.dispose();
      }
      [d0, s0] = [d0 + dn, s0 + sn];
    }
  });
}

/**
 * A fused decode op's weight parts for projections of one input (q/k/v, gate/up, or one already
 * merged qkv_proj / gate_up_proj): one merged part for plain QuantLinears of a mergeable format
 * (merged into `owner` as `name`_merged_* on first use), the Linears apart for float ones, or null
 * where other modules sit there (LoRA wrappers, mixed or unmergeable formats).
 * @example const parts = mergedDecodeParts(attn, 'qkv', [attn.q_proj, attn.k_proj, attn.v_proj])
 */
export function mergedDecodeParts(owner: Module, name: string, projections: readonly Module[]): DecodePart[] | null {
  if (projections.every((m) => isPlain(m, Linear))) {
    const linears = projections as Linear[];
    // other dtypes keep Linear.forward's casting rules (a bf16 weight meeting float32 x)
    return linears.every((l) => l.weight.dtype === 'float32' && (!l.bias || l.bias.dtype === 'float32')) ? linears.map((l) => ({ weight: l.weight, bias: l.bias })) : null;
  }
  if (!projections.every((m) => isPlain(m, QuantLinear))) return null;
  const layers = projections as QuantLinear[];
  if (mergeBlocker(layers)) return null;
  const N = layers.reduce((n, l) => n + l.outFeatures, 0);
  if (layers.length === 1) return [quantPart(layers[0], N, layers[0].qweight, layers[0].scales, layers[0].bias)];
  if (!registeredPart(owner, name, layers, N)) mergeInto(owner, name, layers);
  return [registeredPart(owner, name, layers, N)!];
}
