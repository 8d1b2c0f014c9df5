// The Trainer step of the pairwise methods on a causal LM: DPO (any loss type, precomputed or no
// reference), ORPO, and CPO/SimPO. One forward over the batch's 2B rows gives both completions'
// log-probs; the loss functions (dpo_loss.ts, orpo_loss.ts, cpo_loss.ts) do the rest.
import type { LanguageModel } from '../models/causal_lm.js';
import { div, mul, neg } from '../ops/elementwise.js';
import { noGrad } from '../tensor/grad_mode.js';
import { tensor } from '../ops/creation.js';
import { sum } from '../ops/reduce.js';
import { narrow } from '../ops/view.js';
import type { Tensor } from '../tensor/tensor.js';
import type { TrainStep } from '../train/step.js';
import { type CpoOptions, cpoLoss, cpoUsesAverageLogps } from './cpo_loss.js';
import { type DpoOptions, dpoLoss } from './dpo_loss.js';
import { sequenceLogps } from './logps.js';
import { pairMetrics } from './metrics.js';
import { orpoLoss, orpoMetrics } from './orpo_loss.js';
import { type KtoOptions, ktoLoss, ktoMetrics } from './kto_loss.js';
import type { PairBatch } from './pair_dataset.js';
import { type MicroLoss, weightedStep } from './weighted_step.js';

export type PairMethod =
  | { method: 'dpo'; options: DpoOptions; referenceFree?: boolean }
  | { method: 'orpo'; options: { beta?: number } }
  | { method: 'cpo'; options: CpoOptions }
  /** unpaired: the batch's rows are the completions then their KL rows (loadUnpairedData) */
  | { method: 'kto'; options: KtoOptions };

/** Mean NLL of the chosen completions' tokens (rows 0..B-1): the SFT term of ORPO and CPO. */
function chosenNll(tokenLogps: Tensor, lengths: number[], B: number): Tensor {
  const tokens = lengths.slice(0, B).reduce((a, b) => a + b, 0);
  return div(neg(sum(narrow(tokenLogps, 0, 0, B))), Math.max(tokens, 1));
}

/** One micro-batch's loss and TRL metrics for a method. */
export function pairLoss(model: LanguageModel, b: PairBatch, m: PairMethod): MicroLoss {
  const B = b.pairs;
  const { tokenLogps, logps, lengths } = sequenceLogps(model, b.rows);
  const backend = logps.backendName;
  const vec = (xs: number[]): Tensor => tensor(xs, { backend });
  const [pc, pr] = [narrow(logps, 0, 0, B), narrow(logps, 0, B, B)];
  const avg = (): [Tensor, Tensor] => [div(pc, vec(lengths.slice(0, B).map((n) => Math.max(n, 1)))), div(pr, vec(lengths.slice(B).map((n) => Math.max(n, 1))))];
  const tokens = b.rows.inputIds.length * (b.rows.inputIds[0]?.length ?? 0);
  if (m.method === 'dpo') {
    if (!b.reference && !m.referenceFree) throw new Error('DPO: the batch has no reference log-probs (compute them once with computeReferenceLogps, or train reference-free)');
    const ref = b.reference ?? { chosen: new Array<number>(B).fill(0), rejected: new Array<number>(B).fill(0) };
    const out = dpoLoss({
      policyChosen: pc, policyRejected: pr, referenceChosen: vec(ref.chosen), referenceRejected: vec(ref.rejected),
      chosenLengths: vec(lengths.slice(0, B)), rejectedLengths: vec(lengths.slice(B)),
    }, m.options);
    return { loss: out.loss, metrics: pairMetrics({ ...out, chosenLogps: pc, rejectedLogps: pr }), weight: B, tokens };
  }
  if (m.method === 'kto') return ktoMicroLoss(b, pc, pr, m.options, tokens);
  const nll = chosenNll(tokenLogps, lengths, B);
  if (m.method === 'orpo') {
    const [ac, ar] = avg();
    const out = orpoLoss({ chosenLogps: ac, rejectedLogps: ar, nll }, m.options);
    return { loss: out.loss, metrics: { ...pairMetrics({ ...out, chosenLogps: ac, rejectedLogps: ar }), ...orpoMetrics(out.logOdds), nll_loss: nll.item() }, weight: B, tokens };
  }
  const [c, r] = cpoUsesAverageLogps(m.options.lossType ?? 'sigmoid') ? avg() : [pc, pr];
  const out = cpoLoss({ chosenLogps: c, rejectedLogps: r, nll }, m.options);
  return { loss: out.loss, metrics: { ...pairMetrics({ ...out, chosenLogps: c, rejectedLogps: r }), nll_loss: nll.item() }, weight: B, tokens };
}

/** KTO on a batch of completions (pc) and their KL rows (pr: no gradient, only the KL estimate). */
function ktoMicroLoss(b: PairBatch, policy: Tensor, policyKL: Tensor, options: KtoOptions, tokens: number): MicroLoss {
  if (!b.desirable) throw new Error('KTO: the batch has no desirable/undesirable labels (load the data with loadUnpairedData)');
  if (!b.reference) throw new Error('KTO: the batch has no reference log-probs (compute them once with computeReferenceLogps)');
  const vec = (xs: number[]): Tensor => tensor(xs, { backend: policy.backendName });
  const out = ktoLoss({
    policyLogps: policy, referenceLogps: vec(b.reference.chosen), label: b.desirable,
    policyKLLogps: noGrad(() => mul(policyKL, 1)), referenceKLLogps: vec(b.reference.rejected),
  }, options);
  return { loss: out.loss, metrics: ktoMetrics(out, policy, b.desirable), weight: b.pairs, tokens };
}

/**
 * The Trainer step of a pairwise method.
 * @example new Trainer({ model, data: pairs, step: pairStep(model, { method: 'dpo', options: { beta: 0.1 } }), batchSize: 4, maxSteps: 100 })
 */
export function pairStep(model: LanguageModel, m: PairMethod): TrainStep<PairBatch> {
  return weightedStep((b: PairBatch) => pairLoss(model, b, m), (b) => b.pairs);
}
