// PPO's experience (TRL's PPOTrainer rollout phase; DeepSpeed-Chat's generate_experience): one
// sampled completion per prompt with the KV cache, then, without gradient, the actor's and the
// reference's token log-probs, the critic's values and the reward model's score; per-token
// KL-penalised rewards, GAE per sequence and advantages whitened over the batch's tokens.
import type { LanguageModel } from '../models/causal_lm.js';
import type { DecoderForSequenceClassification } from '../models/seq_cls.js';
import { tensor } from '../ops/creation.js';
import { narrow, squeeze } from '../ops/view.js';
import { toArray } from '../ops/transfer.js';
import { noGrad } from '../tensor/grad_mode.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import type { Batch } from '../data/packing.js';
import { gae, whiten } from './advantages.js';
import { completionLogps } from './grpo_step.js';
import { klPenalizedRewards } from './ppo_loss.js';
import type { PromptExample } from './prompts.js';
import { type RewardFunction, scoreCompletions } from './rewards.js';
import { type Rollout, type RolloutOptions, sampleCompletions } from './rollout.js';
import { meanOf as mean } from '../preference/metrics.js';

/** Rollout rows with what the updates need, per completion token ([N][M], 0 past each completion's end). */
export interface Experience extends Pick<Rollout, 'rows' | 'promptWidth' | 'completionMask'> {
  oldLogps: number[][];
  oldValues: number[][];
  advantages: number[][];
  returns: number[][];
  /** the rollout's statistics, logged with every update it feeds */
  metrics: Record<string, number>;
}

/** The models one experience is collected with. */
export interface ExperienceModels {
  actor: LanguageModel;
  critic: DecoderForSequenceClassification;
  /** the frozen reference's completion log-probs of the same rows (the base with adapters off, or a second model) */
  referenceLogps: (s: Pick<Rollout, 'rows' | 'promptWidth' | 'completionMask'>) => Tensor;
  /** scores the whole sequence (read at its last token); summed with `rewards` when both are given */
  rewardModel?: DecoderForSequenceClassification | null;
  rewards?: Record<string, RewardFunction>;
}

export interface ExperienceOptions {
  rollout: Omit<RolloutOptions, 'numGenerations'>;
  /** the per-token KL penalty's coefficient (TRL's kl_coef 0.05; DeepSpeed-Chat's 0.1) */
  klCoef?: number;
  gamma?: number;
  lambda?: number;
}


/** A rollout's int64 inputs with its left-padding positions. */
function rowInputs(rows: Batch, backend: string | undefined): { inputIds: Tensor; attentionMask: Tensor; positionIds: Tensor } {
  const ids = (r: number[][]): Tensor => tensor(r, { dtype: 'int64', backend });
  return { inputIds: ids(rows.inputIds), attentionMask: ids(rows.attentionMask), positionIds: ids(rows.positionIds!) };
}

/**
 * The critic's values of the completion tokens [N, M]: V at column P - 1 + j is the value of the
 * prefix that token j continues (TRL: value[:, context_length - 1 : -1]).
 */
export function completionValues(critic: DecoderForSequenceClassification, s: Pick<Rollout, 'rows' | 'promptWidth' | 'completionMask'>): Tensor {
  return tidy(() => {
    const v = critic.tokenLogits(rowInputs(s.rows, critic.parameters()[0]?.backendName)); // [N, P + M, 1]
    return squeeze(narrow(v, 1, s.promptWidth - 1, s.completionMask[0].length), 2);
  });
}

/** The reward model's score of each row, read at its last token (the last completion token). */
function rewardModelScores(rm: DecoderForSequenceClassification, r: Rollout): number[] {
  const scores = noGrad(() => tidy(() => toArray(rm.tokenLogits(rowInputs(r.rows, rm.parameters()[0]?.backendName))) as number[][][]));
  return r.completionMask.map((m, i) => scores[i][r.promptWidth + m.reduce((a, b) => a + b, 0) - 1][0]);
}

/** Each row's first `len` values (the completion's tokens). */
const prefixes = (t: Tensor, lens: readonly number[]): number[][] => (toArray(t) as number[][]).map((row, i) => row.slice(0, lens[i]));

/** Pads each row with zeros to width M. */
const padTo = (rows: readonly number[][], M: number): number[][] => rows.map((r) => [...r, ...new Array<number>(M - r.length).fill(0)]);

/**
 * Samples one completion per prompt and turns it into PPO's experience.
 * @example const exp = await collectExperience({ actor, critic, referenceLogps, rewardModel }, prompts, { rollout, klCoef: 0.05 })
 */
export async function collectExperience(m: ExperienceModels, prompts: readonly PromptExample[], o: ExperienceOptions): Promise<Experience> {
  if (!m.rewardModel && !Object.keys(m.rewards ?? {}).length) throw new Error('PPO needs a reward: a reward model (a *ForSequenceClassification) and/or reward functions');
  const { klCoef = 0.05, gamma = 1, lambda = 0.95 } = o;
  const r = await sampleCompletions(m.actor, prompts, { ...o.rollout, numGenerations: 1 });
  const M = r.completionMask[0].length;
  const lens = r.completionMask.map((row) => row.reduce((a, b) => a + b, 0));
  const [logps, refLogps, values] = noGrad(() => tidy(() => [
    prefixes(completionLogps(m.actor, r).logps, lens), prefixes(m.referenceLogps(r), lens), prefixes(completionValues(m.critic, r), lens),
  ]));
  const scores = new Array<number>(prompts.length).fill(0);
  if (m.rewardModel) rewardModelScores(m.rewardModel, r).forEach((x, i) => (scores[i] += x));
  if (m.rewards && Object.keys(m.rewards).length) {
    const fn = scoreCompletions(m.rewards, { prompts: r.prompts.map((p) => p.text), completions: r.completions, records: r.prompts.map((p) => p.record) });
    fn.total.forEach((x, i) => (scores[i] += x));
  }
  const perToken = logps.map((lp, i) => klPenalizedRewards(lp, refLogps[i], scores[i], klCoef));
  const estimates = perToken.map((rw, i) => gae(rw, values[i], { gamma, lambda }));
  // whitened over every completion token of the batch (TRL's masked_whiten), then laid back out per row
  const flat = whiten(estimates.flatMap((e) => e.advantages));
  let at = 0;
  const advantages = estimates.map((e) => e.advantages.map(() => flat[at++]));
  const kl = logps.map((lp, i) => lp.reduce((a, x, t) => a + x - refLogps[i][t], 0));
  const nonScore = perToken.map((rw, i) => rw.reduce((a, x) => a + x, 0) - scores[i]);
  const metrics = {
    reward: mean(scores), kl: mean(kl), non_score_reward: mean(nonScore), rlhf_reward: mean(scores) + mean(nonScore), completion_length: mean(lens),
  };
  return {
    rows: r.rows, promptWidth: r.promptWidth, completionMask: r.completionMask, metrics,
    oldLogps: padTo(logps, M), oldValues: padTo(values, M), advantages: padTo(advantages, M), returns: padTo(estimates.map((e) => e.returns), M),
  };
}

/** The experience of the given rows only (a minibatch), with the same prompt block. */
export function selectRows(e: Experience, rows: readonly number[]): Experience {
  const pick = <T>(xs: readonly T[]): T[] => rows.map((i) => xs[i]);
  const b = e.rows;
  return {
    rows: { inputIds: pick(b.inputIds), attentionMask: pick(b.attentionMask), labels: pick(b.labels), ...(b.positionIds ? { positionIds: pick(b.positionIds) } : {}) },
    promptWidth: e.promptWidth, completionMask: pick(e.completionMask), metrics: e.metrics,
    oldLogps: pick(e.oldLogps), oldValues: pick(e.oldValues), advantages: pick(e.advantages), returns: pick(e.returns),
  };
}
