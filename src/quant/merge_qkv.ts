// The q, k and v projections of a decoder layer as one weight for the fused decode op
// (src/ops/fused/rms_norm_qkv_rope.ts): quantized q/k/v of one format are concatenated row-wise
// once, on first use, into buffers of the attention module (`qkv_merged_*`, not in the state
// dict), and the three QuantLinears' buffers become views of them, so the weight is stored once
// and a decode step streams it in one GEMV. Float32 Linears are passed as three parts (no copy:
// their weights may still be trained).
import { Tensor } from '../tensor/tensor.js';
import { tensor } from '../ops/creation.js';
import { cat } from '../ops/indexing.js';
import { narrow } from '../ops/view.js';
import { noGrad } from '../tensor/grad_mode.js';
import { tidy } from '../tensor/scope.js';
import { Linear } from '../nn/layers.js';
import type { Module } from '../nn/module.js';
import type { QkvWeightPart } from '../ops/fused/rms_norm_qkv_rope.js';
import { QuantLinear } from './quant_linear.js';

const MERGED = { qweight: 'qkv_merged_qweight', scales: 'qkv_merged_scales', bias: 'qkv_merged_bias' } as const;

const isPlain = (m: unknown, cls: typeof Linear | typeof QuantLinear): boolean => m instanceof cls && m.constructor === cls;

/** Why these QuantLinears cannot share one merged weight (null when they can). */
export function qkvMergeBlocker(layers: readonly QuantLinear[]): string | null {
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
function quantPart(first: QuantLinear, N: number, data: Tensor, scales: Tensor, bias: Tensor | null): QkvWeightPart {
  const kind = first.type === 'q4' ? '4bit' : (first.type as 'int8' | 'bf16');
  const blockSize = kind === '4bit' ? first.blockSize : 0;
  return { weight: { kind, N, K: first.inFeatures, data, code: first.code, blockSize, scales: kind === 'bf16' ? data : scales, nested: null }, bias };
}

/** The merged weight registered on `owner`, as a fused-op part (null when none is). */
function registeredPart(owner: Module, first: QuantLinear, N: number): QkvWeightPart | null {
  const data: unknown = Reflect.get(owner, MERGED.qweight);
  if (!(data instanceof Tensor)) return null;
  const bias: unknown = Reflect.get(owner, MERGED.bias);
  return quantPart(first, N, data, (Reflect.get(owner, MERGED.scales) as Tensor | undefined) ?? data, bias instanceof Tensor ? bias : null);
}

/** Concatenates the layers' buffers into `owner`'s merged buffers and makes theirs views of them. */
function mergeInto(owner: Module, layers: readonly QuantLinear[]): void {
  noGrad(() => {
    const catBuffers = (name: 'qweight' | 'scales'): Tensor => cat(layers.map((l) => l[name]), 0);
    const data = owner.registerBuffer(MERGED.qweight, catBuffers('qweight'), false, { format: true });
    const scales = layers[0].type === 'bf16' ? null : owner.registerBuffer(MERGED.scales, catBuffers('scales'), false, { format: true });
    if (layers.some((l) => l.bias)) {
      // a layer without a bias adds zeros
      const bias = tidy(() => cat(layers.map((l) => l.bias ?? tensor(new Float32Array(l.outFeatures), { backend: data.backendName })), 0));
      owner.registerBuffer(MERGED.bias, bias, false);
    }
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
 * The fused decode op's weight parts for a layer's q/k/v projections (or its one qkv_proj): one
 * merged part for plain QuantLinears of a mergeable format, the Linears apart for float ones, or
 * null where the layer has other modules there (LoRA wrappers, mixed or unmergeable formats).
 * @example const parts = decodeQkvParts(attn, [attn.q_proj, attn.k_proj, attn.v_proj])
 */
export function decodeQkvParts(owner: Module, projections: readonly Module[]): QkvWeightPart[] | null {
  if (projections.every((m) => isPlain(m, Linear))) return (projections as Linear[]).map((l) => ({ weight: l.weight, bias: l.bias }));
  if (!projections.every((m) => isPlain(m, QuantLinear))) return null;
  const layers = projections as QuantLinear[];
  if (qkvMergeBlocker(layers)) return null;
  const N = layers.reduce((n, l) => n + l.outFeatures, 0);
  if (layers.length === 1) return [quantPart(layers[0], N, layers[0].qweight, layers[0].scales, layers[0].bias)];
  if (!registeredPart(owner, layers[0], N)) mergeInto(owner, layers);
  return [registeredPart(owner, layers[0], N)!];
}
