// DPO and its variants as functions of sequence log-probs (Rafailov et al. 2023 and the loss types
// of TRL 1.13's DPOTrainer, whose formulas and edge cases ../shared/fixtures/preference pins): the
// model-free half of DPO, so it is tested on fixed numbers and reused by the trainer strategy.
import { add, mul, neg, sub, unary } from '../ops/elementwise.js';
import { logSigmoid } from '../ops/log_sigmoid.js';
import { mean } from '../ops/reduce.js';
import { noGrad } from '../tensor/grad_mode.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { shapeStr } from '../tensor/layout.js';

export const DPO_LOSS_TYPES = [
  'sigmoid', 'ipo', 'hinge', 'robust', 'exo_pair', 'bco_pair', 'nca_pair', 'sppo_hard', 'apo_zero', 'apo_down', 'sigmoid_norm', 'discopop',
] as const;
export type DpoLossType = (typeof DPO_LOSS_TYPES)[number];

/** Summed completion log-probs [B] of the policy and the reference; lengths [B] for the length-normalised types. */
export interface PairLogps {
  policyChosen: Tensor;
  policyRejected: Tensor;
  /** zeros for reference-free DPO */
  referenceChosen: Tensor;
  referenceRejected: Tensor;
  /** completion token counts (ipo, sigmoid_norm divide by them, clamped to >= 1) */
  chosenLengths?: Tensor;
  rejectedLengths?: Tensor;
}

export interface DpoOptions {
  lossType?: DpoLossType;
  /** default 0.1 */
  beta?: number;
  /** robust and exo_pair only (TRL 1.13's sigmoid ignores it; a non-zero value there is refused) */
  labelSmoothing?: number;
  /** discopop's temperature (default 0.05) */
  discopopTau?: number;
}

export interface PairLossOutput {
  /** mean over the batch (the trainer's scalar) */
  loss: Tensor;
  /** [B] */
  perExample: Tensor;
  /** beta * (policy - reference) log-ratios [B], no gradient */
  chosenRewards: Tensor;
  rejectedRewards: Tensor;
}

const sigmoid = (x: Tensor): Tensor => unary('sigmoid', x);
const square = (x: Tensor): Tensor => mul(x, x);
const rsub = (a: number, x: Tensor): Tensor => sub(a, x);

function checkPair(lp: PairLogps, needLengths: boolean, what: string): void {
  const ts = [lp.policyChosen, lp.policyRejected, lp.referenceChosen, lp.referenceRejected];
  const B = lp.policyChosen.shape[0];
  for (const t of ts) if (t.ndim !== 1 || t.shape[0] !== B) throw new Error(`${what}: log-probs must all be [${B}] (one per pair), got ${ts.map((x) => shapeStr(x.shape)).join(', ')}`);
  if (needLengths && (!lp.chosenLengths || !lp.rejectedLengths)) throw new Error(`${what}: this loss type divides by completion lengths: pass chosenLengths and rejectedLengths`);
}

/**
 * The per-example loss of one DPO loss type. With the log-ratios c = pc - rc, r = pr - rr and
 * d = c - r: sigmoid -logsig(b d); hinge relu(1 - b d); ipo (c/Lc - r/Lr - 1/(2b))^2; robust
 * (-(1-ls) logsig(b d) + ls logsig(-b d)) / (1 - 2 ls); exo_pair, bco_pair, nca_pair, sppo_hard,
 * apo_zero, apo_down, sigmoid_norm, discopop as in ../shared/fixtures/preference/README.md.
 */
function perExampleLoss(type: DpoLossType, c: Tensor, r: Tensor, lp: PairLogps, beta: number, ls: number, tau: number): Tensor {
  const d = sub(c, r);
  const bd = mul(d, beta);
  const normalised = (): Tensor => sub(div1(c, lp.chosenLengths!), div1(r, lp.rejectedLengths!));
  switch (type) {
    case 'sigmoid': return neg(logSigmoid(bd));
    case 'hinge': return unary('relu', rsub(1, bd));
    case 'ipo': return square(sub(normalised(), 1 / (2 * beta)));
    case 'sigmoid_norm': return neg(logSigmoid(mul(normalised(), beta)));
    case 'robust': return mul(add(mul(logSigmoid(bd), -(1 - ls)), mul(logSigmoid(neg(bd)), ls)), 1 / (1 - 2 * ls));
    case 'exo_pair': return add(
      mul(sigmoid(bd), sub(logSigmoid(bd), Math.log1p(-ls))),
      mul(sigmoid(neg(bd)), sub(logSigmoid(neg(bd)), Math.log(ls))));
    case 'bco_pair': return sub(neg(logSigmoid(mul(c, beta))), logSigmoid(mul(r, -beta)));
    case 'nca_pair': {
      const [bc, br] = [mul(c, beta), mul(r, beta)];
      return sub(sub(neg(logSigmoid(bc)), mul(logSigmoid(neg(bc)), 0.5)), mul(logSigmoid(neg(br)), 0.5));
    }
    case 'sppo_hard': return add(square(sub(c, 0.5 / beta)), square(add(r, 0.5 / beta)));
    case 'apo_zero': return add(rsub(1, sigmoid(mul(c, beta))), sigmoid(mul(r, beta)));
    case 'apo_down': return add(sigmoid(mul(c, beta)), rsub(1, sigmoid(bd)));
    case 'discopop': {
      const m = sigmoid(mul(bd, 1 / tau));
      return add(mul(neg(logSigmoid(bd)), rsub(1, m)), mul(unary('exp', neg(bd)), m));
    }
  }
}

/** x / max(len, 1) (TRL clamps the lengths so an empty completion does not divide by 0). */
function div1(x: Tensor, len: Tensor): Tensor {
  return mul(x, unary('reciprocal', unary('clamp', len, 1, Infinity)));
}

/**
 * The DPO loss of a batch of pairs, with TRL's implicit rewards.
 * @example
 * const { loss, chosenRewards } = dpoLoss({ policyChosen, policyRejected, referenceChosen, referenceRejected }, { beta: 0.1 });
 * loss.backward();
 */
export function dpoLoss(lp: PairLogps, opts: DpoOptions = {}): PairLossOutput {
  const { lossType = 'sigmoid', beta = 0.1, labelSmoothing = 0, discopopTau = 0.05 } = opts;
  if (!DPO_LOSS_TYPES.includes(lossType)) throw new Error(`dpoLoss: unknown loss type '${lossType}' (one of ${DPO_LOSS_TYPES.join(', ')})`);
  if (!(beta > 0)) throw new Error(`dpoLoss: beta must be > 0, got ${beta}`);
  if (!(labelSmoothing >= 0 && labelSmoothing < 0.5)) throw new Error(`dpoLoss: labelSmoothing must be in [0, 0.5), got ${labelSmoothing}`);
  if (labelSmoothing > 0 && lossType !== 'robust' && lossType !== 'exo_pair')
    throw new Error(`dpoLoss: labelSmoothing ${labelSmoothing} has no effect on loss type '${lossType}' (TRL 1.13 uses it in 'robust' and 'exo_pair' only; use one of those for noisy labels)`);
  if (lossType === 'exo_pair' && !(labelSmoothing > 0)) throw new Error('dpoLoss: exo_pair needs labelSmoothing > 0 (it takes log(labelSmoothing)); TRL suggests 1e-3');
  checkPair(lp, lossType === 'ipo' || lossType === 'sigmoid_norm', 'dpoLoss');
  return tidy(() => {
    const c = sub(lp.policyChosen, lp.referenceChosen);
    const r = sub(lp.policyRejected, lp.referenceRejected);
    const perExample = perExampleLoss(lossType, c, r, lp, beta, labelSmoothing, discopopTau);
    const [chosenRewards, rejectedRewards] = noGrad(() => [mul(c, beta), mul(r, beta)]);
    return { loss: mean(perExample), perExample, chosenRewards, rejectedRewards };
  });
}
