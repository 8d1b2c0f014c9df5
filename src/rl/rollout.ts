// Rollouts: G sampled completions per prompt with the KV cache (the existing generate(): left-
// padded prompts, HF positions), cut at the first eos, decoded for the reward functions and laid
// out as training rows (prompt + completion, labels on the completion only).
import type { Batch } from '../data/packing.js';
import { IGNORE_INDEX } from '../data/example.js';
import { generate } from '../infer/generate.js';
import type { LanguageModel } from '../models/causal_lm.js';
import { tensor } from '../ops/creation.js';
import { toArray } from '../ops/transfer.js';
import { defaultGenerator } from '../tensor/rng.js';
import type { PromptExample } from './prompts.js';

export interface RolloutOptions {
  /** completions per prompt (G; GRPO needs >= 2 to compare them, PPO samples 1) */
  numGenerations: number;
  maxNewTokens: number;
  temperature?: number;
  topP?: number;
  topK?: number;
  eosTokenIds: number[];
  padTokenId: number;
  /** token ids -> text (special tokens skipped) */
  decode: (ids: number[]) => string;
}

export interface Rollout {
  /** [N, P + M]: left-padded prompt then completion; N = prompts * G, group by group */
  rows: Batch;
  /** P: the prompt block's width (completion token j sits at column P + j) */
  promptWidth: number;
  /** [N, M] 1 on completion tokens through the first eos, 0 after */
  completionMask: number[][];
  completions: string[];
  prompts: PromptExample[];
}

/** HF's positions for a left-padded row: cumsum(mask) - 1, and 1 at pads. */
function positions(mask: readonly number[]): number[] {
  let c = 0;
  return mask.map((x) => (x ? c++ : 1));
}

/**
 * Samples G completions for every prompt (no gradient). The sampling seed is drawn from the
 * default generator, so a resumed run draws the same rollouts.
 * @example const r = await sampleCompletions(model, prompts, { numGenerations: 8, maxNewTokens: 64, eosTokenIds: [2], padTokenId: 0, decode })
 */
export async function sampleCompletions(model: LanguageModel, prompts: readonly PromptExample[], o: RolloutOptions): Promise<Rollout> {
  if (!(Number.isInteger(o.maxNewTokens) && o.maxNewTokens >= 1)) throw new Error(`sampleCompletions: maxNewTokens must be an integer >= 1, got ${o.maxNewTokens}`);
  if (!(Number.isInteger(o.numGenerations) && o.numGenerations >= 1)) throw new Error(`sampleCompletions: numGenerations must be an integer >= 1, got ${o.numGenerations}`);
  const expanded = prompts.flatMap((p) => Array.from({ length: o.numGenerations }, () => p));
  const P = Math.max(...expanded.map((p) => p.ids.length));
  const promptIds = expanded.map((p) => [...new Array<number>(P - p.ids.length).fill(o.padTokenId), ...p.ids]);
  const promptMask = expanded.map((p) => [...new Array<number>(P - p.ids.length).fill(0), ...p.ids.map(() => 1)]);
  const backend = model.parameters()[0]?.backendName;
  const seed = (defaultGenerator.seed * 1000003 + defaultGenerator.next('uniform', 1)) % 2 ** 31;
  const wasTraining = model.training;
  model.eval();
  let out: number[][];
  try {
    const ids = tensor(promptIds, { dtype: 'int64', backend });
    const am = tensor(promptMask, { dtype: 'int64', backend });
    // generate runs its forwards under noGrad itself
    const gen = await generate(model, ids, {
      attentionMask: am, maxNewTokens: o.maxNewTokens, doSample: true, temperature: o.temperature ?? 1, topP: o.topP ?? 1, topK: o.topK ?? 0,
      seed, eosTokenId: o.eosTokenIds, padTokenId: o.padTokenId,
    });
    out = toArray(gen) as number[][];
    for (const t of [ids, am, gen]) t.dispose();
  } finally {
    if (wasTraining) model.train();
  }
  const completionIds = out.map((row) => row.slice(P));
  const completionMask = completionIds.map((c) => {
    const end = c.findIndex((t) => o.eosTokenIds.includes(t));
    return c.map((_, j) => (end === -1 || j <= end ? 1 : 0));
  });
  const attentionMask = promptMask.map((m, i) => [...m, ...completionMask[i]]);
  return {
    rows: {
      inputIds: out,
      attentionMask,
      positionIds: attentionMask.map(positions),
      labels: out.map((row, i) => row.map((t, j) => (j >= P && completionMask[i][j - P] ? t : IGNORE_INDEX))),
    },
    promptWidth: P,
    completionMask,
    completions: completionIds.map((c, i) => o.decode(c.filter((_, j) => completionMask[i][j]))),
    prompts: expanded,
  };
}
