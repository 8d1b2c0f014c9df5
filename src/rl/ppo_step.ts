// PPO for RLHF on the Trainer (Ouyang et al. 2022; TRL's PPOTrainer, DeepSpeed-Chat's step 3).
// One Trainer step = one rollout batch: prepare() collects the experience (ppo_experience.ts), and
// updates() plans ppoEpochs passes over it in numMinibatches shuffled minibatches, each one
// optimizer update of the clipped policy loss + vfCoef * the clipped value loss. Actor and critic
// are one module (TRL's PolicyAndValueWrapper), so one optimizer, checkpoint and resume cover both.
import type { CausalLM, LanguageModel } from '../models/causal_lm.js';
import type { DecoderForSequenceClassification } from '../models/seq_cls.js';
import { activeAdapter, withAdaptersDisabled } from '../lora/peft.js';
import { Module } from '../nn/module.js';
import { tensor } from '../ops/creation.js';
import { add, mul } from '../ops/elementwise.js';
import { sum } from '../ops/reduce.js';
import { item } from '../ops/transfer.js';
import { SeededRandom, permutation } from '../data/shuffle.js';
import { noGrad } from '../tensor/grad_mode.js';
import { defaultGenerator } from '../tensor/rng.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import type { TrainStep } from '../train/step.js';
import { weightedStep } from '../preference/weighted_step.js';
import { completionLogps } from './grpo_step.js';
import { type Experience, type ExperienceOptions, collectExperience, completionValues, selectRows } from './ppo_experience.js';
import { ppoPolicyLoss, ppoValueLoss } from './ppo_loss.js';
import type { PromptBatch } from './prompts.js';
import type { RewardFunction } from './rewards.js';

/**
 * The trained pair: the actor (policy) and the critic (value head on its own trunk). Nothing of
 * the actor is shared with the critic; under LoRA the reference is the actor's own base.
 */
export class ActorCritic extends Module {
  constructor(readonly actor: CausalLM, readonly critic: DecoderForSequenceClassification) {
    super();
  }
}

/** A batch of prompts; prepare() attaches its experience (a minibatch of it in updates()). */
export interface PpoBatch extends PromptBatch {
  experience?: Experience;
}

export interface PpoConfig extends ExperienceOptions {
  /** the frozen reference; default: the actor with its LoRA adapters disabled */
  reference?: LanguageModel | null;
  rewardModel?: DecoderForSequenceClassification | null;
  rewards?: Record<string, RewardFunction>;
  /** passes over each rollout batch (TRL 4, DeepSpeed-Chat 1) */
  ppoEpochs?: number;
  /** minibatches (optimizer updates) per pass (TRL 1) */
  numMinibatches?: number;
  /** ratio clip (TRL cliprange 0.2) and value clip (cliprange_value 0.2) */
  clipRange?: number;
  clipRangeValue?: number;
  /** the value loss's weight (TRL vf_coef 0.1) */
  vfCoef?: number;
}

const completionTokens = (e: Experience): number => e.completionMask.reduce((n, m) => n + m.reduce((a, x) => a + x, 0), 0);

/** The experience buffer's minibatches for every epoch, shuffled by a seed drawn from the default generator (so resume redraws them). */
function planUpdates(micro: PpoBatch[], epochs: number, minibatches: number): PpoBatch[][] {
  const rows = micro.flatMap((b, m) => b.experience!.completionMask.map((_, i) => [m, i] as const));
  if (rows.length < minibatches) throw new Error(`PPO: ${rows.length} rollouts do not fill ${minibatches} minibatches (raise --batch-size or lower --num-mini-batches)`);
  const seed = defaultGenerator.next('uniform', 1) * 2 ** 31;
  const updates: PpoBatch[][] = [];
  for (let e = 0; e < epochs; e++) {
    const order = permutation(rows.length, new SeededRandom(seed, e));
    for (let k = 0; k < minibatches; k++) {
      const chosen = [...order].filter((_, j) => j % minibatches === k).map((j) => rows[j]);
      // one piece per rollout micro-batch (their prompt blocks differ), accumulated into one update
      updates.push(micro.flatMap((b, m) => {
        const picked = chosen.filter(([mm]) => mm === m).map(([, i]) => i);
        return picked.length ? [{ prompts: picked.map((i) => b.prompts[i]), experience: selectRows(b.experience!, picked) }] : [];
      }));
    }
  }
  return updates;
}

/**
 * The Trainer step of PPO; train `new ActorCritic(actor, critic)`.
 * @example new Trainer({ model: new ActorCritic(actor, critic), data: prompts, step: ppoStep(actor, critic, { rewardModel, rollout }), batchSize: 8, maxSteps: 100 })
 */
export function ppoStep(actor: CausalLM, critic: DecoderForSequenceClassification, c: PpoConfig): TrainStep<PpoBatch> {
  const { ppoEpochs = 4, numMinibatches = 1, clipRange = 0.2, clipRangeValue = 0.2, vfCoef = 0.1 } = c;
  const reference = c.reference ?? null;
  if (!reference && !activeAdapter(actor)) throw new Error('PPO needs a frozen reference: pass a reference model, or train the actor with LoRA (the reference is then its base with the adapters disabled)');
  const referenceLogps: Parameters<typeof collectExperience>[0]['referenceLogps'] = (s) =>
    reference ? completionLogps(reference, s).logps : withAdaptersDisabled(actor, () => completionLogps(actor, s).logps);
  const step = weightedStep((b: PpoBatch) => {
    const e = b.experience;
    if (!e) throw new Error('PPO: the batch has no experience (the Trainer calls prepare() before accumulate())');
    const at = (xs: number[][]): Tensor => tensor(xs, { backend: actor.parameters()[0]?.backendName });
    const mask = at(e.completionMask);
    const { logps, entropy } = completionLogps(actor, e, true);
    const policy = ppoPolicyLoss({ logps, oldLogps: at(e.oldLogps), advantages: at(e.advantages), mask }, { clipRange });
    const value = ppoValueLoss({ values: completionValues(critic, e), oldValues: at(e.oldValues), returns: at(e.returns), mask }, { clipRange: clipRangeValue });
    const tokens = completionTokens(e);
    const metrics = {
      ...e.metrics, policy_loss: item(policy.loss), value_loss: item(value.loss), clipfrac: policy.clipfrac, value_clipfrac: value.clipfrac,
      approxkl: policy.approxKl, entropy: noGrad(() => tidy(() => item(sum(mul(entropy!, mask))))) / Math.max(tokens, 1),
    };
    return { loss: add(policy.loss, mul(value.loss, vfCoef)), metrics, weight: tokens, tokens: e.rows.inputIds.length * e.rows.inputIds[0].length };
  }, (b) => completionTokens(b.experience!));
  return {
    ...step,
    prepare: async (micro) => {
      const out: PpoBatch[] = [];
      // no dropout while sampling and scoring (generate sets eval itself; the scoring forwards here too)
      const models = [actor, critic, ...(reference ? [reference] : []), ...(c.rewardModel ? [c.rewardModel] : [])];
      const training = models.map((m) => m.training);
      models.forEach((m) => m.eval());
      try {
        for (const b of micro) out.push({ prompts: b.prompts, experience: await collectExperience({ actor, critic, referenceLogps, rewardModel: c.rewardModel, rewards: c.rewards }, b.prompts, c) });
      } finally {
        models.forEach((m, i) => (training[i] ? m.train() : m.eval()));
      }
      return out;
    },
    updates: (micro) => planUpdates(micro, ppoEpochs, numMinibatches),
    evaluate: () => {
      throw new Error('PPO has no held-out loss: measure the reward of rollouts on held-out prompts with collectExperience');
    },
  };
}
