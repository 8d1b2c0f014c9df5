// Quantizes a model's Linear layers in place (QLoRA's first step): every Linear except lm_head
// (and the names in `skip`) becomes a QuantLinear under the same property name, so module paths
// (model.layers.0.self_attn.q_proj) still match Hugging Face names.
import { Linear } from '../nn/layers.js';
import type { Module } from '../nn/module.js';
import { type QuantOptions, QuantLinear } from './quant_linear.js';

export interface QuantizeModelOptions extends QuantOptions {
  /** property names (q_proj) or full paths (model.layers.0.mlp.down_proj) to keep in float */
  skip?: string[];
}

/**
 * Replaces Linear layers by QuantLinear in place; returns the replaced paths.
 * @example quantizeModel(model, { type: 'nf4', doubleQuant: true })  // then injectLora(model, ...)
 */
export function quantizeModel(model: Module, opts: QuantizeModelOptions): string[] {
  const skip = new Set(['lm_head', ...(opts.skip ?? [])]);
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
  return done;
}
