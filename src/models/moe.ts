// Sparse mixture of experts (HF MixtralSparseMoeBlock): softmax router over all experts, top-k
// with renormalised weights, each expert a SwiGLU MLP (w1 gate, w3 up, w2 down) run on the
// tokens routed to it; plus the Switch-Transformer load-balancing loss (load_balancing_loss_func).
import { arange, tensor, zeros } from '../ops/creation.js';
import { compare, div, maskedFill, mul, to } from '../ops/elementwise.js';
import { cat, gather, indexAdd, indexSelect } from '../ops/indexing.js';
import { argmax, sum } from '../ops/reduce.js';
import { softmax } from '../ops/softmax.js';
import { reshape, unsqueeze } from '../ops/view.js';
import { noGrad } from '../tensor/grad_mode.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { Linear } from '../nn/layers.js';
import { Module } from '../nn/module.js';
import type { InitOpts } from '../nn/init.js';
import type { DecoderConfig } from './config.js';
import { glu } from '../ops/glu.js';
import { toArray } from '../ops/transfer.js';

export class Expert extends Module {
  w1: Linear;
  w2: Linear;
  w3: Linear;
  constructor(readonly c: DecoderConfig, init: InitOpts) {
    super();
    this.w1 = new Linear(c.hiddenSize, c.intermediateSize, { ...init, bias: false });
    this.w2 = new Linear(c.intermediateSize, c.hiddenSize, { ...init, bias: false });
    this.w3 = new Linear(c.hiddenSize, c.intermediateSize, { ...init, bias: false });
  }
  forward(x: Tensor): Tensor {
    return this.w2.forward(glu(this.w1.forward(x), this.w3.forward(x), this.c.activation));
  }
}

/** Indices and weights of the top-k entries per row of probs [N, E] (first index on ties, like torch.topk here). */
function topK(probs: Tensor, k: number): { index: Tensor; weight: Tensor } {
  return tidy(() => {
    const picks: Tensor[] = [];
    let rest = probs;
    for (let i = 0; i < k; i++) {
      const idx = noGrad(() => argmax(rest, -1, true)); // [N, 1]
      picks.push(idx);
      const onehot = noGrad(() => compare('eq', reshape(arange(probs.shape[1], undefined, 1, { backend: probs.backendName }), [1, -1]), idx));
      rest = noGrad(() => maskedFill(rest, onehot, -Infinity));
    }
    const index = cat(picks, 1); // [N, k]
    return { index, weight: gather(probs, 1, index) };
  });
}

export class SparseMoe extends Module {
  gate: Linear;
  experts: Expert[];

  constructor(readonly c: DecoderConfig, init: InitOpts) {
    super();
    const moe = c.moe!;
    this.gate = new Linear(c.hiddenSize, moe.numExperts, { ...init, bias: false });
    this.experts = Array.from({ length: moe.numExperts }, () => new Expert(c, init));
  }

  /** x [B, T, D] -> out [B, T, D] and router logits [B*T, E] */
  forward(x: Tensor): { out: Tensor; routerLogits: Tensor } {
    const [B, T, D] = x.shape;
    const { topK: k, numExperts: E } = this.c.moe!;
    return tidy(() => {
      const flat = reshape(x, [B * T, D]);
      const routerLogits = this.gate.forward(flat);
      const probs = softmax(to(routerLogits, 'float32'), -1);
      const { index, weight } = topK(probs, k);
      const w = to(div(weight, sum(weight, -1, true)), x.dtype); // renormalised top-k weights [N, k]
      // Route on the host: which (token, slot) pairs each expert serves.
      const chosen = toArray(index) as number[][];
      let out = zeros([B * T, D], { dtype: x.dtype, backend: x.backendName });
      for (let e = 0; e < E; e++) {
        const rows: number[] = [];
        const slots: number[] = [];
        chosen.forEach((r, n) => r.forEach((ex, s) => ex === e && (rows.push(n), slots.push(n * k + s))));
        if (!rows.length) continue;
        const rowIdx = tensor(rows, { dtype: 'int64', backend: x.backendName });
        const slotIdx = tensor(slots, { dtype: 'int64', backend: x.backendName });
        const y = this.experts[e].forward(indexSelect(flat, 0, rowIdx)); // [n_e, D]
        const we = indexSelect(reshape(w, [B * T * k]), 0, slotIdx); // [n_e]
        out = indexAdd(out, 0, rowIdx, mul(y, unsqueeze(we, 1)));
      }
      return { out: reshape(out, [B, T, D]), routerLogits };
    });
  }
}

/**
 * The load-balancing loss over all layers' router logits ([N, E] each): E * sum_e (fraction of
 * routing slots to e) * (mean router probability of e), means over unpadded tokens when a mask is given.
 */
export function loadBalancingLoss(routerLogits: Tensor[], numExperts: number, k: number, attentionMask: Tensor | null): Tensor {
  return tidy(() => {
    const logits = cat(routerLogits.map((l) => to(l, 'float32')), 0); // [L*N, E]
    const probs = softmax(logits, -1);
    const { index } = topK(probs, k);
    const experts = reshape(arange(numExperts, undefined, 1, { backend: logits.backendName }), [1, 1, numExperts]);
    const expertMask = to(compare('eq', unsqueeze(index, 2), experts), 'float32'); // [L*N, k, E]
    let tokensPerExpert: Tensor;
    let probPerExpert: Tensor;
    if (!attentionMask) {
      tokensPerExpert = div(sum(expertMask, 0), expertMask.shape[0]);
      probPerExpert = div(sum(probs, 0), probs.shape[0]);
    } else {
      const L = routerLogits.length;
      const m = to(reshape(attentionMask, [1, -1]), 'float32'); // [1, N]
      const tokenMask = reshape(mul(m, tensor(new Float32Array(L).fill(1), { shape: [L, 1], backend: logits.backendName })), [-1, 1]); // [L*N, 1]
      tokensPerExpert = div(sum(mul(expertMask, unsqueeze(tokenMask, 2)), 0), sum(tokenMask));
      probPerExpert = div(sum(mul(probs, tokenMask), 0), sum(tokenMask));
    }
    return mul(sum(mul(tokensPerExpert, unsqueeze(probPerExpert, 0))), numExperts);
  });
}

