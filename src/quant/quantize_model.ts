// Quantizes a model's Linear layers in place (QLoRA's first step; decode-time bf16/int8/q4
// weights): every Linear except lm_head (unless `head`) and the names in `skip` becomes a
// QuantLinear under the same property name, so module paths (model.layers.0.self_attn.q_proj)
// still match Hugging Face names.
import { isNativeBf16Path, loadNative } from '../backend/addon.js';
import { Linear } from '../nn/layers.js';
import type { Module } from '../nn/module.js';
import type { Tensor } from '../tensor/tensor.js';
import { type QuantOptions, QuantLinear } from './quant_linear.js';

/** The weight formats of quantized inference (`--quant`): the decode GEMV's fast formats. */
export const INFERENCE_QUANTS = ['bf16', 'int8', 'q4'] as const;
export type InferenceQuant = (typeof INFERENCE_QUANTS)[number];

/** Throws unless q is one of INFERENCE_QUANTS, naming `where` (a flag or option). */
export function checkInferenceQuant(q: string, where: string): InferenceQuant {
  if (!(INFERENCE_QUANTS as readonly string[]).includes(q)) throw new Error(`${where} must be one of ${INFERENCE_QUANTS.join(', ')}, got ${JSON.stringify(q)}`);
  return q as InferenceQuant;
}

export interface QuantizeModelOptions extends QuantOptions {
  /** property names (q_proj) or full paths (model.layers.0.mlp.down_proj) to keep in float */
  skip?: string[];
  /**
   * quantize the output head too (decoding reads it every token: the largest matrix of small
   * models); with `tiedHead`, the [V, D] embedding a tied model multiplies as its head, a quantized
   * copy becomes the root's `lm_head` (the embedding itself stays float for the lookups)
   */
  head?: boolean;
  tiedHead?: Tensor;
}

/**
 * Replaces Linear layers by QuantLinear in place; returns the replaced paths.
 * @example quantizeModel(model, { type: 'nf4', doubleQuant: true })  // then injectLora(model, ...)
 */
export function quantizeModel(model: Module, opts: QuantizeModelOptions): string[] {
  const skip = new Set([...(opts.head ? [] : ['lm_head']), ...(opts.skip ?? [])]);
  const done: string[] = [];
  for (const [path, m] of model.namedModules())
    for (const [key, v] of Object.entries(m)) {
      const at = path ? `${path}.${key}` : key;
      const swap = (l: unknown, name: string): unknown => {
        if (!(l instanceof Linear) || skip.has(key) || skip.has(name)) return l;
        const q = QuantLinear.fromLinear(l, opts);
        l.dispose();
        done.push(name);
        return q;
      };
      if (Array.isArray(v)) v.forEach((l, i) => (v[i] = swap(l, `${at}.${i}`)));
      else if (v instanceof Linear) Reflect.set(m, key, swap(v, at));
    }
  if (opts.head && opts.tiedHead) {
    if (Reflect.get(model, 'lm_head') !== undefined) throw new Error('quantizeModel: tiedHead given, but the model has its own lm_head');
    Reflect.set(model, 'lm_head', QuantLinear.fromWeight(opts.tiedHead, null, opts));
    done.push('lm_head');
  }
  return done;
}

/**
 * Lets every QuantLinear of an inference model on the CPU backend multiply a prompt's prefill rows
 * faster than float32 (QuantLinear.prefillDtype): in bf16 where the CPU multiplies bf16 natively (AMX
 * or AVX512_BF16), elsewhere int8 and q4 layers with int8 activations (the kernel takes them where it
 * has an integer product: q4, and int8 up to 127 rows, on AVX2; elsewhere bf16 operands would only be widened, so float32 is as
 * fast and exact). KESTREL_PREFILL_DTYPE=float32 keeps float32. Returns the layers marked.
 * @example usePrefillDtype(model)  // after quantizeModel(model, { type: 'int8', head: true })
 */
export function usePrefillDtype(model: Module): number {
  if (process.env.KESTREL_PREFILL_DTYPE === 'float32') return 0;
  const bf16 = isNativeBf16Path(loadNative()?.info().bf16Gemm);
  let marked = 0;
  for (const [, m] of model.namedModules())
    if (m instanceof QuantLinear && m.qweight.backendName === 'cpu') {
      const dtype = bf16 ? 'bfloat16' : m.type === 'int8' || m.type === 'q4' ? 'int8' : null;
      if (!dtype) continue;
      m.prefillDtype = dtype;
      marked++;
    }
  return marked;
}
