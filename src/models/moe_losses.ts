// The router's auxiliary losses. loadBalancingLoss is transformers' load_balancing_loss_func
// (Switch Transformer eq. 4 with top-k, as Mixtral and Qwen2-MoE compute router_aux_loss):
//   E * sum_e sum_s f_{s,e} P_e,  f_{s,e} = fraction of tokens whose s-th choice is e,
//   P_e = mean router probability of e (both over the unpadded tokens of every layer)
// routerZLoss is ST-MoE's z-loss (Zoph et al. 2022, eq. 5): mean over tokens of logsumexp(logits)^2,
// which keeps router logits small. Both take every MoE layer's logits [N, E] (N = B*T).
import { tensor } from '../ops/creation.js';
import { div, mul, to } from '../ops/elementwise.js';
import { cat } from '../ops/indexing.js';
import { logsumexp, sum } from '../ops/reduce.js';
import { softmax } from '../ops/softmax.js';
import { toFloat32Array } from '../ops/transfer.js';
import { reshape } from '../ops/view.js';
import { shapeStr } from '../tensor/layout.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';

/** Per-token weights (1 = counted) for L layers of N tokens from a [B, T] mask, or all ones. */
function tokenWeights(layers: number, n: number, attentionMask: Tensor | null): Float64Array {
  const w = new Float64Array(layers * n).fill(1);
  if (!attentionMask) return w;
  if (attentionMask.numel !== n) throw new Error(`router loss: attentionMask ${shapeStr(attentionMask.shape)} does not cover the ${n} routed tokens`);
  const m = toFloat32Array(attentionMask);
  for (let l = 0; l < layers; l++) for (let i = 0; i < n; i++) w[l * n + i] = m[i];
  return w;
}

/** Every layer's logits as one [L*N, E], float32 (float64 stays float64); layers must route the same N tokens. */
function allLogits(routerLogits: readonly Tensor[]): Tensor {
  if (!routerLogits.length) throw new Error('router loss: no router logits (the model has no MoE layer)');
  const n = routerLogits[0].shape[0];
  for (const [i, l] of routerLogits.entries())
    if (l.ndim !== 2 || l.shape[0] !== n) throw new Error(`router loss: layer ${i} logits ${shapeStr(l.shape)}, layer 0 has ${n} tokens`);
  return cat(routerLogits.map((l) => (l.dtype === 'float64' ? l : to(l, 'float32'))), 0);
}

/**
 * transformers' load_balancing_loss_func over all layers' router logits (with its attention-mask variant).
 * @example loadBalancingLoss(out.routerLogits, 8, 2, attentionMask) // ~1 for a balanced router
 */
export function loadBalancingLoss(routerLogits: readonly Tensor[], numExperts: number, k: number, attentionMask: Tensor | null): Tensor {
  return tidy(() => {
    const logits = allLogits(routerLogits); // [L*N, E]
    const rows = logits.shape[0];
    const w = tokenWeights(routerLogits.length, routerLogits[0].shape[0], attentionMask);
    const probs = softmax(logits, -1);
    // f [k, E]: fraction of counted tokens whose s-th choice is e (no gradient, as HF's one_hot)
    const host = toFloat32Array(probs); // float32 ranks as the float32 router does
    const f = new Float64Array(k * numExperts);
    let counted = 0;
    for (let r = 0; r < rows; r++) {
      counted += w[r];
      const row = host.subarray(r * numExperts, (r + 1) * numExperts);
      const order = Array.from(row.keys()).sort((a, b) => row[b] - row[a] || a - b);
      for (let s = 0; s < k; s++) f[s * numExperts + order[s]] += w[r];
    }
    const opts = { dtype: logits.dtype, backend: logits.backendName };
    const fT = tensor(f.map((x) => x / counted), { ...opts, shape: [k, numExperts] });
    const wT = tensor(w, { ...opts, shape: [rows, 1] });
    const meanProb = div(sum(mul(probs, wT), 0, true), counted); // [1, E]
    return mul(sum(mul(fT, meanProb)), numExperts);
  });
}

/**
 * ST-MoE's router z-loss: the mean over counted tokens (every layer) of logsumexp(logits)^2.
 * @example add(loss, mul(routerZLoss(out.routerLogits, mask), 1e-3))
 */
export function routerZLoss(routerLogits: readonly Tensor[], attentionMask: Tensor | null): Tensor {
  return tidy(() => {
    const logits = allLogits(routerLogits);
    const w = tokenWeights(routerLogits.length, routerLogits[0].shape[0], attentionMask);
    const counted = w.reduce((a, b) => a + b, 0);
    const lse = reshape(logsumexp(logits, -1), [-1, 1]);
    const wT = tensor(w, { dtype: logits.dtype, backend: logits.backendName, shape: [w.length, 1] });
    return div(sum(mul(mul(lse, lse), wT)), counted);
  });
}
