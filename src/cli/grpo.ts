// `kestrel grpo --model DIR --data prompts.jsonl --rewards rewards.ts --output DIR [--lora]`:
// GRPO (Unsloth's popular recipe: LoRA/QLoRA, G sampled completions per prompt, TypeScript reward
// functions) on the Trainer: its flags, checkpoints, resume, metrics.jsonl (reward, reward_std,
// completion_length, rewards/<function>, entropy, kl, clip_ratio/*).
import { saveAdapter } from '../lora/peft.js';
import { savePretrained } from '../models/load.js';
import { GRPO_LOSS_TYPES } from '../rl/grpo_loss.js';
import { grpoStep } from '../rl/grpo_step.js';
import { loadPromptData } from '../rl/prompts.js';
import { type RewardFunction, correctness, loadRewardModule } from '../rl/rewards.js';
import { numberFlag } from './flags.js';
import { ADAPTER_FLAGS, applyAdapters, causalModel, trainOnPrompts } from './preference.js';
import { checkOutput, oneOf, resolveSettings } from './train.js';

const FLAGS = {
  ...ADAPTER_FLAGS,
  rewards: { type: 'string', multiple: true }, reward: { type: 'string', multiple: true }, 'num-generations': { type: 'string' },
  'max-new-tokens': { type: 'string' }, 'max-prompt-length': { type: 'string' }, temperature: { type: 'string' }, 'top-p': { type: 'string' },
  beta: { type: 'string' }, epsilon: { type: 'string' }, 'loss-type': { type: 'string' }, 'scale-rewards': { type: 'string' }, 'chat-template': { type: 'string' },
} as const;

/** The built-in reward functions --reward names. */
export const BUILTIN_REWARDS: Record<string, RewardFunction> = { correctness };

/** The reward functions of --rewards FILE (every exported function) and --reward NAME (built-ins). */
async function rewardFunctions(values: Record<string, unknown>): Promise<Record<string, RewardFunction>> {
  const fns: Record<string, RewardFunction> = {};
  for (const file of (values.rewards as string[] | undefined) ?? []) Object.assign(fns, await loadRewardModule(file));
  for (const name of (values.reward as string[] | undefined) ?? []) fns[name] = BUILTIN_REWARDS[oneOf(name, Object.keys(BUILTIN_REWARDS), '--reward')];
  if (!Object.keys(fns).length) throw new Error('grpo needs reward functions: --rewards FILE (a module exporting functions) and/or --reward correctness');
  return fns;
}

export async function grpoCommand(argv: string[]): Promise<number> {
  const { settings: s, warnings, values } = resolveSettings(argv, { flags: FLAGS });
  for (const w of warnings) process.stderr.write(`warning: ${w}\n`);
  const rewards = await rewardFunctions(values);
  const G = numberFlag(values, 'num-generations', { int: true, min: 2 }) ?? 8;
  const lossType = values['loss-type'] === undefined ? 'dapo' : oneOf(values['loss-type'], GRPO_LOSS_TYPES, '--loss-type');
  const scaleRewards = values['scale-rewards'] === undefined ? 'group' : oneOf(values['scale-rewards'], ['group', 'batch', 'none'] as const, '--scale-rewards');
  checkOutput(s);
  const { model, hfConfig, tokenizer } = await causalModel(s.model, s.tokenizer);
  if (!tokenizer) throw new Error(`${s.model}: grpo decodes completions for the reward functions and needs a tokenizer (pass --tokenizer DIR)`);
  model.checkpointing = s.checkpointing;
  const lora = applyAdapters(model, values);
  const data = await loadPromptData(s.data, {
    tokenizer, chatTemplate: values['chat-template'] as string | undefined, maxPromptLength: numberFlag(values, 'max-prompt-length', { int: true, min: 1 }) ?? 512,
    seed: s.seed, skipBadLines: s.skipBadLines, vocabSize: model.config.vocabSize,
  });
  const eos = [...new Set([...tokenizer.eosTokenIds, ...model.config.eosTokenIds])];
  const step = grpoStep(model, {
    rewards, scaleRewards,
    rollout: {
      numGenerations: G, maxNewTokens: numberFlag(values, 'max-new-tokens', { int: true, min: 1 }) ?? 64,
      temperature: numberFlag(values, 'temperature', { above: 0 }) ?? 1, topP: numberFlag(values, 'top-p', { above: 0, max: 1 }),
      eosTokenIds: eos, padTokenId: model.config.padTokenId ?? tokenizer.padTokenId ?? eos[0] ?? 0,
      decode: (ids) => tokenizer.decode(ids, { skipSpecialTokens: true }),
    },
    loss: { lossType, beta: numberFlag(values, 'beta', { min: 0 }) ?? 0, epsilonLow: numberFlag(values, 'epsilon', { above: 0, below: 1 }) ?? 0.2 },
  });
  const { trainer, metrics } = await trainOnPrompts(s, values, { model, data, step, dispose: () => model.dispose() });
  if (lora) saveAdapter(model, s.output, lora, { baseModel: s.model });
  else savePretrained(s.output, { model, hfConfig });
  const r = metrics.map((m) => m.metrics?.reward ?? NaN);
  process.stdout.write(`grpo: trained to step ${trainer.step}, reward ${r[0]?.toFixed(4)} (first step) -> ${r.at(-1)?.toFixed(4)} (last); ${lora ? 'adapter' : 'model'} saved to ${s.output}\n`);
  model.dispose();
  return 0;
}
