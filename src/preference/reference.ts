// Reference log-probs computed once before training (TRL's precompute_ref_log_probs): one no-grad
// pass over the data with the frozen reference, so training holds one model. The reference is
// the model as loaded; with LoRA adapters it is the base with the adapters disabled.
import type { LanguageModel } from '../models/causal_lm.js';
import { activeAdapter, setAdapter } from '../lora/peft.js';
import { noGrad } from '../tensor/grad_mode.js';
import { tidy } from '../tensor/scope.js';
import { sequenceLogps } from './logps.js';
import { values } from './metrics.js';
import type { PairDataset, ReferenceLogps } from './pair_dataset.js';

/**
 * Fills ds.reference with the model's (adapters off) completion log-probs of every pair.
 * @example computeReferenceLogps(model, train, { batchSize: 8 }); // before the Trainer's first step
 */
export function computeReferenceLogps(model: LanguageModel, ds: PairDataset, opts: { batchSize?: number } = {}): ReferenceLogps {
  const batchSize = opts.batchSize ?? 8;
  const adapter = activeAdapter(model);
  const wasTraining = model.training;
  const ref: ReferenceLogps = { chosen: new Float64Array(ds.length), rejected: new Float64Array(ds.length) };
  model.eval();
  if (adapter) setAdapter(model, null);
  try {
    for (let s = 0; s < ds.length; s += batchSize) {
      const indices = Array.from({ length: Math.min(batchSize, ds.length - s) }, (_, i) => s + i);
      const b = ds.collate(indices);
      const lp = noGrad(() => tidy(() => values(sequenceLogps(model, b.rows).logps)));
      indices.forEach((i, j) => ((ref.chosen[i] = lp[j]), (ref.rejected[i] = lp[indices.length + j])));
    }
  } finally {
    if (adapter) setAdapter(model, adapter);
    if (wasTraining) model.train();
  }
  ds.reference = ref;
  return ref;
}
