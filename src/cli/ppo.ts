// `kestrel ppo --actor-model DIR --critic-model DIR --reward-model DIR --data prompts.jsonl --output DIR [--lora]`:
// DeepSpeed-Chat's step 3 (its flag names) with TRL's PPOTrainer defaults, on the Trainer: its flags,
// checkpoints, resume and metrics.jsonl (reward, kl, entropy, clipfrac, value_clipfrac, value_loss,
// policy_loss, approxkl, non_score_reward, rlhf_reward, completion_length). The actor is saved to
// --output (an adapter under --lora), the critic to --output/critic (a whole, loadable reward-model-shaped folder).
import { join } from 'node:path';
import { mergeLora, saveAdapter } from '../lora/peft.js';
import { loadPretrained, savePretrained } from '../models/load.js';
import { DecoderForSequenceClassification } from '../models/seq_cls.js';
import { ActorCritic, ppoStep } from '../rl/ppo_step.js';
import { loadPromptData } from '../rl/prompts.js';
import { loadRewardModule } from '../rl/rewards.js';
import { numberFlag } from './flags.js';
import { ADAPTER_FLAGS, applyAdapters, causalModel, rewardModel, trainOnPrompts } from './preference.js';
import { checkOutput, resolveSettings } from './train.js';

const FLAGS = {
  ...ADAPTER_FLAGS,
  'actor-model': { type: 'string' }, 'critic-model': { type: 'string' }, 'reward-model': { type: 'string' }, rewards: { type: 'string', multiple: true },
  'ppo-epochs': { type: 'string' }, 'num-mini-batches': { type: 'string' }, 'kl-coef': { type: 'string' }, cliprange: { type: 'string' },
  'cliprange-value': { type: 'string' }, 'vf-coef': { type: 'string' }, gamma: { type: 'string' }, lam: { type: 'string' },
  'max-new-tokens': { type: 'string' }, 'max-prompt-length': { type: 'string' }, temperature: { type: 'string' }, 'top-p': { type: 'string' },
  'chat-template': { type: 'string' },
} as const;

/** --actor-model is the trainer's --model (checkpoints, --output checks and the run file use that name). */
const asTrainArgs = (argv: string[]): string[] => argv.map((a) => (a === '--actor-model' ? '--model' : a.startsWith('--actor-model=') ? `--model=${a.slice(14)}` : a));

/** The reward model folder: a *ForSequenceClassification with one label (a fresh head would score nothing). */
async function loadRewardModel(dir: string, tokenizerDir: string | undefined): Promise<DecoderForSequenceClassification> {
  const { model } = await loadPretrained(dir, { tokenizer: tokenizerDir });
  if (!(model instanceof DecoderForSequenceClassification) || model.numLabels !== 1) {
    model.dispose();
    throw new Error(`--reward-model ${dir}: needs a trained reward model (a *ForSequenceClassification folder with num_labels 1, as kestrel rm saves)`);
  }
  for (const p of model.parameters()) p.requiresGrad = false;
  model.eval();
  return model;
}

export async function ppoCommand(argv: string[]): Promise<number> {
  const { settings: s, warnings, values } = resolveSettings(asTrainArgs(argv), { flags: FLAGS });
  for (const w of warnings) process.stderr.write(`warning: ${w}\n`);
  const criticDir = values['critic-model'] as string | undefined;
  const rmDir = values['reward-model'] as string | undefined;
  if (!criticDir) throw new Error('--critic-model DIR is required (DeepSpeed-Chat starts it from the reward model; a causal LM folder gets a fresh value head)');
  const extra = {};
  for (const file of (values.rewards as string[] | undefined) ?? []) Object.assign(extra, await loadRewardModule(file));
  if (!rmDir && !Object.keys(extra).length) throw new Error('ppo needs a reward: --reward-model DIR and/or --rewards FILE (a module exporting reward functions)');
  checkOutput(s);
  const { model: actor, hfConfig, tokenizer } = await causalModel(s.model, s.tokenizer);
  if (!tokenizer) throw new Error(`${s.model}: ppo decodes completions and needs a tokenizer (pass --tokenizer DIR)`);
  const critic = await rewardModel(criticDir, s.tokenizer);
  const rm = rmDir ? await loadRewardModel(rmDir, s.tokenizer) : null;
  for (const [flag, m] of [['--critic-model', critic.model], ['--reward-model', rm]] as const)
    if (m && m.config.vocabSize !== actor.config.vocabSize) throw new Error(`${flag}: vocab size ${m.config.vocabSize} differs from the actor's ${actor.config.vocabSize} (all three models must share the actor's tokenizer)`);
  actor.checkpointing = critic.model.checkpointing = s.checkpointing;
  const lora = applyAdapters(actor, values);
  const criticLora = applyAdapters(critic.model, values, ['score']);
  // without adapters the reference is a second, frozen copy of the actor as loaded
  const reference = lora ? null : (await causalModel(s.model, s.tokenizer)).model;
  for (const p of reference?.parameters() ?? []) p.requiresGrad = false;
  const data = await loadPromptData(s.data, {
    tokenizer, chatTemplate: values['chat-template'] as string | undefined, maxPromptLength: numberFlag(values, 'max-prompt-length', { int: true, min: 1 }) ?? 512,
    seed: s.seed, skipBadLines: s.skipBadLines, vocabSize: actor.config.vocabSize,
  });
  const eos = [...new Set([...tokenizer.eosTokenIds, ...actor.config.eosTokenIds])];
  const step = ppoStep(actor, critic.model, {
    reference, rewardModel: rm, rewards: extra,
    ppoEpochs: numberFlag(values, 'ppo-epochs', { int: true, min: 1 }), numMinibatches: numberFlag(values, 'num-mini-batches', { int: true, min: 1 }),
    klCoef: numberFlag(values, 'kl-coef', { min: 0 }), clipRange: numberFlag(values, 'cliprange', { above: 0 }), clipRangeValue: numberFlag(values, 'cliprange-value', { above: 0 }),
    vfCoef: numberFlag(values, 'vf-coef', { min: 0 }), gamma: numberFlag(values, 'gamma', { min: 0, max: 1 }), lambda: numberFlag(values, 'lam', { min: 0, max: 1 }),
    rollout: {
      maxNewTokens: numberFlag(values, 'max-new-tokens', { int: true, min: 1 }) ?? 64,
      temperature: numberFlag(values, 'temperature', { above: 0 }) ?? 1, topP: numberFlag(values, 'top-p', { above: 0, max: 1 }),
      eosTokenIds: eos, padTokenId: actor.config.padTokenId ?? tokenizer.padTokenId ?? eos[0] ?? 0,
      decode: (ids) => tokenizer.decode(ids, { skipSpecialTokens: true }),
    },
  });
  const model = new ActorCritic(actor, critic.model);
  const disposeAll = (): void => [model, rm, reference].forEach((m) => m?.dispose());
  const { trainer, metrics } = await trainOnPrompts(s, values, { model, data, step, dispose: disposeAll });
  if (lora) saveAdapter(actor, s.output, lora, { baseModel: s.model });
  else savePretrained(s.output, { model: actor, hfConfig });
  if (criticLora) mergeLora(critic.model);
  savePretrained(join(s.output, 'critic'), { model: critic.model, hfConfig: critic.hfConfig });
  const r = metrics.map((m) => m.metrics?.reward ?? NaN);
  process.stdout.write(`ppo: trained to step ${trainer.step}, reward ${r[0]?.toFixed(4)} (first step) -> ${r.at(-1)?.toFixed(4)} (last); actor ${lora ? 'adapter' : 'model'} saved to ${s.output}, critic to ${join(s.output, 'critic')}\n`);
  disposeAll();
  return 0;
}
