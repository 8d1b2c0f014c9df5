// ORPO (Hong et al. 2024): the SFT loss minus beta times the log-sigmoid of the log odds ratio of
// the chosen over the rejected completion (average log-probs), no reference model; as TRL 1.13's
// experimental ORPOTrainer.odds_ratio_loss.
import { mul, sub, unary } from '../ops/elementwise.js';
import { logSigmoid } from '../ops/log_sigmoid.js';
import { mean } from '../ops/reduce.js';
import { noGrad } from '../tensor/grad_mode.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import type { PairLossOutput } from './dpo_loss.js';
import { meanOf, values } from './metrics.js';

/** log(1 - exp(x)) for x < 0, as TRL writes it (log1p(-exp(x))). */
function log1mexp(x: Tensor): Tensor {
  return unary('log', sub(1, unary('exp', x)));
}

export interface OrpoOutput extends PairLossOutput {
  /** [B] log odds ratio (for the log_odds_* metrics) */
  logOdds: Tensor;
}

/**
 * ORPO: log_odds = (a - b) - (log(1 - e^a) - log(1 - e^b)) with a, b the average log-probs of the
 * chosen and rejected completions; loss = nll - beta * mean(logsigmoid(log_odds)). Rewards are
 * beta * a and beta * b. TRL computes this term in float32 (so do the fixtures).
 * @example const { loss } = orpoLoss({ chosenLogps: avgC, rejectedLogps: avgR, nll }, { beta: 0.1 })
 */
export function orpoLoss(inp: { chosenLogps: Tensor; rejectedLogps: Tensor; nll: Tensor }, opts: { beta?: number } = {}): OrpoOutput {
  const { beta = 0.1 } = opts;
  if (!(beta > 0)) throw new Error(`orpoLoss: beta must be > 0, got ${beta}`);
  return tidy(() => {
    const a = inp.chosenLogps;
    const b = inp.rejectedLogps;
    const logOdds = sub(sub(a, b), sub(log1mexp(a), log1mexp(b)));
    const orTerm = mul(logSigmoid(logOdds), beta); // [B]
    const loss = sub(inp.nll, mean(orTerm));
    const [chosenRewards, rejectedRewards] = noGrad(() => [mul(a, beta), mul(b, beta)]);
    return { loss, perExample: mul(orTerm, -1), chosenRewards, rejectedRewards, logOdds };
  });
}

/** ORPO's own metrics (TRL names): mean logsigmoid(log odds) and mean log odds. */
export function orpoMetrics(logOdds: Tensor): { log_odds_ratio: number; log_odds_chosen: number } {
  const ls = noGrad(() => tidy(() => values(logSigmoid(logOdds))));
  return { log_odds_ratio: meanOf(ls), log_odds_chosen: meanOf(values(logOdds)) };
}
