// The usual decay split: matrices decay; norms, biases and embeddings (1-d tensors and any
// parameter whose name contains "embed") do not (HF Trainer / nanoGPT's rule).
import type { Module } from '../nn/module.js';
import type { ParamGroup } from '../optim/optimizer.js';
import type { Tensor } from '../tensor/tensor.js';

export function decayParamGroups<H extends { weightDecay: number }>(model: Module, weightDecay: number): ParamGroup<H>[] {
  const decay: Tensor[] = [];
  const noDecay: Tensor[] = [];
  for (const [name, p] of model.namedParameters()) {
    if (!p.requiresGrad) continue;
    (p.ndim < 2 || /embed|wte|wpe/.test(name) ? noDecay : decay).push(p);
  }
  return [
    { params: decay, options: { weightDecay } as Partial<H> },
    { params: noDecay, options: { weightDecay: 0 } as Partial<H> },
  ].filter((g) => g.params.length > 0);
}
