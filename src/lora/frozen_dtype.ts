// Frozen base weights in half precision, as Unsloth keeps a LoRA model's base in bf16: every frozen
// Linear weight (LoRA's base layers, an untied LM head, modules left out of the adapters) is stored in
// bfloat16, which halves its memory and lets the bf16 GEMM read it with no per-step cast; the trained
// parameters (lora_A/B, modules_to_save copies) stay float32 master weights (PEFT's
// autocast_adapter_dtype). Embeddings (and a head tied to them) and norms stay as they are: the CPU's
// gather and norm kernels take no half operands, and a bf16 residual stream would cost a cast per op.
import { isHalf } from '../tensor/dtype.js';
import { noGrad } from '../tensor/grad_mode.js';
import { keep } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { to } from '../ops/elementwise.js';
import { Embedding, Linear } from '../nn/layers.js';
import { type Module, Parameter } from '../nn/module.js';

/**
 * Casts the weights of the model's frozen float32 Linear layers to `dtype` in place; biases (tiny)
 * stay float32. A weight shared with an Embedding (tied heads) is left alone, so the tie holds.
 * Returns the number of weights cast. Run it after injectLora, which decides what is frozen.
 * @example injectLora(model, config); castFrozenLinears(model, 'bfloat16') // then train under autocast('bfloat16')
 */
export function castFrozenLinears(model: Module, dtype: 'bfloat16' | 'float16'): number {
  if (!isHalf(dtype)) throw new Error(`castFrozenLinears: dtype must be bfloat16 or float16, got ${String(dtype)}`);
  const modules = model.namedModules().map(([, m]) => m);
  const tied = new Set<Tensor>(modules.filter((m): m is Embedding => m instanceof Embedding).map((m) => m.weight));
  const done = new Map<Tensor, Tensor>();
  for (const m of modules) {
    if (!(m instanceof Linear)) continue;
    const w = m.weight;
    if (w.requiresGrad || w.dtype !== 'float32' || tied.has(w)) continue;
    let next = done.get(w);
    if (!next) {
      next = Parameter(keep(noGrad(() => to(w, dtype))), false);
      done.set(w, next);
    }
    m.weight = next;
  }
  for (const old of done.keys()) old.dispose();
  return done.size;
}
