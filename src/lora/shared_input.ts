// Projections that read the same x (q/k/v, gate/up): the LoRA layers among them run as one fused
// group (one stacked A product over x, one dx buffer in backward); any other layer runs its own forward.
import type { Tensor } from '../tensor/tensor.js';
import { type LoraProjection, loraLinearGroup } from './fused_lora.js';
import { LoraLinear } from './lora_linear.js';

/**
 * [layer_1(x), layer_2(x), ...], with the active LoRA layers fused into one pass over x.
 * @example const [q, k, v] = sharedInputProjections(x, [attn.q_proj, attn.k_proj, attn.v_proj])
 */
export function sharedInputProjections(x: Tensor, layers: readonly { forward(x: Tensor): Tensor }[]): Tensor[] {
  const lora: { at: number; p: LoraProjection }[] = [];
  layers.forEach((l, at) => {
    const p = l instanceof LoraLinear ? l.projection() : null;
    if (p) lora.push({ at, p });
  });
  const out: Tensor[] = new Array(layers.length);
  if (lora.length > 1) loraLinearGroup(x, lora.map((e) => e.p)).forEach((y, i) => (out[lora[i].at] = y));
  layers.forEach((l, i) => (out[i] ??= l.forward(x)));
  return out;
}
