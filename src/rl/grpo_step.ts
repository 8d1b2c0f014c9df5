// GRPO on the Trainer (Shao et al. 2024; TRL 1.13's GRPOTrainer with one update per generation):
// prepare() samples G completions per prompt with the KV cache and scores them with the reward
// functions; accumulate() runs the policy over the rollout and backpropagates the clipped
// objective with group-normalised advantages (and, with beta > 0, the KL to the reference: the
// base with LoRA adapters disabled). Logged under TRL's names: reward, reward_std,
// completion_length, frac_reward_zero_std, rewards/<function>, entropy, kl, clip_ratio/*.
import type { LanguageModel } from '../models/causal_lm.js';
import { activeAdapter, withAdaptersDisabled } from '../lora/peft.js';
import { tensor } from '../ops/creation.js';
import { narrow } from '../ops/view.js';
import { mul } from '../ops/elementwise.js';
import { sum } from '../ops/reduce.js';
import { item } from '../ops/transfer.js';
import { noGrad } from '../tensor/grad_mode.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import type { TrainStep } from '../train/step.js';
import { sequenceLogps } from '../preference/logps.js';
import { weightedStep } from '../preference/weighted_step.js';
import { type RewardScaling, groupAdvantages } from './advantages.js';
import { type GrpoOptions, grpoLoss } from './grpo_loss.js';
import type { PromptBatch } from './prompts.js';
import { type RewardFunction, scoreCompletions } from './rewards.js';
import { type Rollout, type RolloutOptions, sampleCompletions } from './rollout.js';
import { meanOf as mean } from '../preference/metrics.js';

export interface ScoredRollout extends Rollout {
  rewards: number[];
  advantages: number[];
  /** reward statistics of this rollout (logged with the step) */
  metrics: Record<string, number>;
}

export interface GrpoConfig {
  rewards: Record<string, RewardFunction>;
  rewardWeights?: Record<string, number>;
  rollout: RolloutOptions;
  loss?: GrpoOptions;
  /** advantage scaling (default 'group', TRL's) */
  scaleRewards?: RewardScaling;
}

const std = (xs: readonly number[]): number => {
  const m = mean(xs);
  return Math.sqrt(xs.reduce((a, x) => a + (x - m) ** 2, 0) / Math.max(xs.length - 1, 1));
};

/** Samples and scores one batch of prompts. */
export async function scoredRollout(model: LanguageModel, prompts: PromptBatch['prompts'], c: GrpoConfig): Promise<ScoredRollout> {
  const r = await sampleCompletions(model, prompts, c.rollout);
  const { total, perFunction } = scoreCompletions(c.rewards, { prompts: r.prompts.map((p) => p.text), completions: r.completions, records: r.prompts.map((p) => p.record) }, c.rewardWeights);
  const G = c.rollout.numGenerations;
  const groupStds = Array.from({ length: total.length / G }, (_, g) => std(total.slice(g * G, (g + 1) * G)));
  const metrics: Record<string, number> = {
    reward: mean(total), reward_std: mean(groupStds), frac_reward_zero_std: mean(groupStds.map((s) => (s === 0 ? 1 : 0))),
    completion_length: mean(r.completionMask.map((m) => m.reduce((a, b) => a + b, 0))),
  };
  for (const [name, xs] of Object.entries(perFunction)) metrics[`rewards/${name}`] = mean(xs.map((x) => (Number.isNaN(x) ? 0 : x)));
  return { ...r, rewards: total, advantages: groupAdvantages(total, G, c.scaleRewards ?? 'group'), metrics };
}

/** Completion tokens of a rollout (through each first eos). */
const completionTokens = (s: ScoredRollout): number => s.completionMask.reduce((n, m) => n + m.reduce((a, x) => a + x, 0), 0);

/**
 * The completion columns [N, M] of the rows' token log-probs (token j of the completion is scored
 * at column P - 1 + j), and with `entropy` the same columns of the next-token entropies.
 */
export function completionLogps(model: LanguageModel, s: Pick<Rollout, 'rows' | 'promptWidth' | 'completionMask'>, entropy = false): { logps: Tensor; entropy: Tensor | null } {
  const M = s.completionMask[0].length;
  const r = sequenceLogps(model, s.rows, { entropy });
  return { logps: narrow(r.tokenLogps, 1, s.promptWidth - 1, M), entropy: r.tokenEntropy ? narrow(r.tokenEntropy, 1, s.promptWidth - 1, M) : null };
}

/**
 * The Trainer step of GRPO.
 * @example new Trainer({ model, data: prompts, step: grpoStep(model, { rewards: { correctness }, rollout: { numGenerations: 8, maxNewTokens: 32, eosTokenIds, padTokenId, decode } }), batchSize: 4, maxSteps: 50 })
 */
export function grpoStep(model: LanguageModel, c: GrpoConfig): TrainStep<PromptBatch> {
  const beta = c.loss?.beta ?? 0;
  const lossType = c.loss?.lossType ?? 'dapo';
  if (beta !== 0 && !activeAdapter(model)) throw new Error(`GRPO: beta ${beta} needs a reference model: train with LoRA (the reference is the base with the adapters disabled) or use beta 0 (TRL's default)`);
  const step = weightedStep((b: PromptBatch) => {
    const s = b.scored;
    if (!s) throw new Error('GRPO: the batch was not sampled (the Trainer calls prepare() before accumulate())');
    const mask = tensor(s.completionMask, { backend: model.parameters()[0]?.backendName });
    const tokens = completionTokens(s);
    let refLogps: Tensor | null = null;
    if (beta !== 0) refLogps = withAdaptersDisabled(model, () => noGrad(() => tidy(() => completionLogps(model, s).logps)));
    const { logps, entropy } = completionLogps(model, s, true);
    // dapo = sum / tokens of the whole step: each micro-batch's token mean (bnpo) weighted by its tokens
    const out = grpoLoss({ logps, refLogps, advantages: tensor(s.advantages, { backend: logps.backendName }), mask }, { ...c.loss, lossType: lossType === 'dapo' ? 'bnpo' : lossType });
    const meanEntropy = noGrad(() => item(sum(mul(entropy!, mask))) / Math.max(tokens, 1));
    return { loss: out.loss, metrics: { ...s.metrics, ...out.metrics, entropy: meanEntropy }, weight: lossType === 'dapo' ? tokens : s.advantages.length, tokens: s.rows.inputIds.length * s.rows.inputIds[0].length };
  }, (b) => (lossType === 'dapo' ? completionTokens(b.scored!) : b.scored!.advantages.length));
  return {
    ...step,
    prepare: async (micro) => {
      const out: PromptBatch[] = [];
      for (const b of micro) out.push({ prompts: b.prompts, scored: await scoredRollout(model, b.prompts, c) });
      return out;
    },
    evaluate: () => {
      throw new Error('GRPO has no held-out loss: measure the reward on held-out prompts with scoredRollout (the demo reports accuracy before and after)');
    },
  };
}
