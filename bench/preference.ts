// Preference / RL benchmark (issue 12), smol135m shape with LoRA (r 16, every linear layer but the
// head), finetune's dtype: (1) a DPO step (one pair: prompt 128 + completion 128 tokens for each of
// chosen and rejected, one concatenated forward of the 2 rows) against the SFT step on one of those
// sequences and on both (the same tokens); target DPO <= 2.2x the one-sequence SFT step. (2) GRPO's
// rollout (sampleCompletions: G completions per prompt) against a plain generate() of the same
// left-padded batch: the RL loop's overhead on generation. (3) PPO's experience phase
// (collectExperience: one completion per prompt, then the actor's, the reference's (adapters off),
// the LoRA critic's and a reward model's forwards over the rows) and its generation alone, against
// a plain generate() of the same prompts. Medians after a warm-up, one process.
// Run: node --import tsx bench/preference.ts [--steps 3] [--dtype fp32|bf16] [--new-tokens 16]
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import * as k from '../src/index.js';
import { loadNative } from '../src/backend/addon.js';
import { finetuneDtype } from '../src/cli/finetune.js';
import { decoderConfig } from '../src/models/registry.js';
import { accumulateGradients } from '../src/train/step.js';
import { decayParamGroups } from '../src/train/param_groups.js';
import { PairDataset } from '../src/preference/pair_dataset.js';
import { pairStep } from '../src/preference/pair_step.js';
import { computeReferenceLogps } from '../src/preference/reference.js';
import { type RolloutOptions, sampleCompletions } from '../src/rl/rollout.js';
import type { PromptExample } from '../src/rl/prompts.js';
import { collectExperience } from '../src/rl/ppo_experience.js';
import { completionLogps } from '../src/rl/grpo_step.js';
import { withAdaptersDisabled } from '../src/lora/peft.js';
import { DecoderForSequenceClassification } from '../src/models/seq_cls.js';
import type { DecoderConfig } from '../src/models/config.js';
import { median, writeResult } from './lib/report.js';

const S = { dim: 576, layers: 30, heads: 9, kv: 3, ffn: 1536, vocab: 49152 }; // DESIGN.md's smol135m
const PROMPT = 128;
const COMPLETION = 128;
const LORA = { r: 16, alpha: 32, targetModules: 'all-linear' as const };

function time(steps: number, fn: () => void): number {
  const ts: number[] = [];
  for (let i = 0; i < steps + 1; i++) {
    const t0 = performance.now();
    fn();
    if (i > 0) ts.push(performance.now() - t0); // the first is the warm-up
  }
  return median(ts);
}

/** Median ms of `rl` (after a warm-up) and of a plain sampled generate() of the same rows (each prompt `copies` times). */
async function timeAgainstGenerate(model: k.CausalLM, prompts: PromptExample[], copies: number, newTokens: number, steps: number, rl: () => Promise<unknown>): Promise<{ rl: number; generate: number }> {
  const tRl: number[] = [];
  const tGenerate: number[] = [];
  for (let i = 0; i < steps + 1; i++) {
    let t0 = performance.now();
    await rl();
    if (i > 0) tRl.push(performance.now() - t0);
    const input = k.tensor(prompts.flatMap((p) => Array.from({ length: copies }, () => p.ids)), { dtype: 'int64' });
    t0 = performance.now();
    const out = await k.generate(model, input, { maxNewTokens: newTokens, doSample: true, temperature: 1, seed: i, eosTokenId: [-1] });
    if (i > 0) tGenerate.push(performance.now() - t0);
    input.dispose();
    out.dispose();
  }
  return { rl: median(tRl), generate: median(tGenerate) };
}

/** PPO's critic and reward model: smol135m trunks with a 1-label score head; the critic with LoRA (as `kestrel ppo` does). */
function valueModel(cfg: DecoderConfig, dtype: 'fp32' | 'bf16', lora: boolean): DecoderForSequenceClassification {
  const m = new DecoderForSequenceClassification(cfg, 1);
  if (lora) k.lora.injectLora(m, { ...LORA, modulesToSave: ['score'] });
  else for (const p of m.parameters()) p.requiresGrad = false;
  if (dtype === 'bf16') k.lora.castFrozenLinears(m, 'bfloat16');
  return m;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { steps: { type: 'string', default: '3' }, dtype: { type: 'string' }, 'new-tokens': { type: 'string', default: '16' } } });
  const steps = Number(values.steps);
  const dtype = (values.dtype ?? finetuneDtype(loadNative()?.info() ?? null).dtype) as 'fp32' | 'bf16';
  const autocast = dtype === 'bf16' ? 'bfloat16' : null;
  k.manualSeed(0);
  const model = new k.CausalLM(decoderConfig({
    model_type: 'llama', vocab_size: S.vocab, hidden_size: S.dim, intermediate_size: S.ffn, num_hidden_layers: S.layers,
    num_attention_heads: S.heads, num_key_value_heads: S.kv, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: true, max_position_embeddings: 4096,
  }, 'smol135m (bench)'));
  k.lora.injectLora(model, LORA);
  if (dtype === 'bf16') k.lora.castFrozenLinears(model, 'bfloat16');
  const opt = new k.optim.AdamW(decayParamGroups(model, 0.01), { lr: 1e-5 });
  const gen = new k.Generator(1);
  const ids = (n: number): number[] => (k.randint(0, S.vocab, [n], { generator: gen }).toArray() as number[]);
  const prompt = ids(PROMPT);
  const seq = (c: number[]) => ({ inputIds: [...prompt, ...c], labels: [...prompt.map(() => -100), ...c] });
  const [chosen, rejected] = [seq(ids(COMPLETION)), seq(ids(COMPLETION))];
  const row = (e: { inputIds: number[]; labels: number[] }) => ({ inputIds: [e.inputIds], labels: [e.labels], attentionMask: [e.inputIds.map(() => 1)] });
  const both = { inputIds: [chosen.inputIds, rejected.inputIds], labels: [chosen.labels, rejected.labels], attentionMask: [chosen.inputIds.map(() => 1), rejected.inputIds.map(() => 1)] };
  model.train();
  const sftStep = (b: ReturnType<typeof row>) => () => {
    accumulateGradients(model, [b], { autocast });
    opt.step();
    opt.zeroGrad();
  };
  const sft1 = time(steps, sftStep(row(chosen)));
  const sft2 = time(steps, sftStep(both));
  const ds = new PairDataset([{ chosen, rejected }], 0, 0);
  computeReferenceLogps(model, ds);
  const dpo = pairStep(model, { method: 'dpo', options: { beta: 0.1 } });
  const batch = ds.collate([0]);
  const dpoMs = time(steps, () => {
    dpo.accumulate([batch], { autocast });
    opt.step();
    opt.zeroGrad();
  });
  console.log(`smol135m LoRA ${dtype}: SFT 1x256 ${sft1.toFixed(0)} ms, SFT 2x256 ${sft2.toFixed(0)} ms, DPO 1 pair (2x256) ${dpoMs.toFixed(0)} ms = ${(dpoMs / sft1).toFixed(2)}x SFT per sequence, ${(dpoMs / sft2).toFixed(2)}x SFT on the same tokens`);

  // rollouts: 2 prompts x G 4, 32-token prompts, new-tokens each, sampled; vs generate() of the same batch
  // (both outside autocast: generation awaits between steps, so a synchronous autocast scope would not cover it)
  const G = 4;
  const newTokens = Number(values['new-tokens']);
  const prompts = [0, 1].map(() => ({ ids: ids(32), text: '', record: {} }));
  const rolloutOpts = { numGenerations: G, maxNewTokens: newTokens, temperature: 1, eosTokenIds: [-1], padTokenId: 0, decode: () => '' };
  const grpoMs = await timeAgainstGenerate(model, prompts, G, newTokens, steps, () => sampleCompletions(model, prompts, rolloutOpts));
  const tokens = prompts.length * G * newTokens;
  const [rollTps, genTps] = [tokens / (grpoMs.rl / 1e3), tokens / (grpoMs.generate / 1e3)];
  console.log(`rollout ${prompts.length}x${G} completions of ${newTokens} tokens: ${rollTps.toFixed(1)} tok/s vs generate ${genTps.toFixed(1)} tok/s (${(rollTps / genTps).toFixed(2)}x)`);

  // PPO: 8 prompts, one completion each; the experience phase as the trainer runs it, its generation alone, and generate()
  const ppoPrompts = Array.from({ length: 8 }, () => ({ ids: ids(32), text: '', record: {} }));
  const critic = valueModel(model.config, dtype, true);
  const rewardModel = valueModel(model.config, dtype, false);
  const ppoRollout: Omit<RolloutOptions, 'numGenerations'> = { ...rolloutOpts };
  const referenceLogps = (r: Parameters<typeof completionLogps>[1]) => withAdaptersDisabled(model, () => completionLogps(model, r).logps);
  const ppoTokens = ppoPrompts.length * newTokens;
  const ppoExp = await timeAgainstGenerate(model, ppoPrompts, 1, newTokens, steps, () => collectExperience({ actor: model, critic, rewardModel, referenceLogps }, ppoPrompts, { rollout: ppoRollout }));
  const ppoGen = await timeAgainstGenerate(model, ppoPrompts, 1, newTokens, steps, () => sampleCompletions(model, ppoPrompts, { ...ppoRollout, numGenerations: 1 }));
  const ppo = {
    prompts: ppoPrompts.length, newTokens,
    experienceTokPerSec: ppoTokens / (ppoExp.rl / 1e3), rolloutTokPerSec: ppoTokens / (ppoGen.rl / 1e3), generateTokPerSec: ppoTokens / (median([ppoExp.generate, ppoGen.generate]) / 1e3),
    experienceMs: ppoExp.rl, rolloutMs: ppoGen.rl, generateMs: median([ppoExp.generate, ppoGen.generate]),
  };
  console.log(`PPO experience ${ppo.prompts} prompts x ${newTokens} tokens: ${ppo.experienceTokPerSec.toFixed(1)} tok/s (generation alone ${ppo.rolloutTokPerSec.toFixed(1)} tok/s) vs generate ${ppo.generateTokPerSec.toFixed(1)} tok/s (${(ppo.experienceTokPerSec / ppo.generateTokPerSec).toFixed(2)}x, ${(ppo.rolloutTokPerSec / ppo.generateTokPerSec).toFixed(2)}x)`);
  critic.dispose();
  rewardModel.dispose();

  const path = writeResult('preference', {
    threads: 'all cores (KESTREL_NUM_THREADS unset)', config: 'smol135m', lora: LORA, dtype, steps, prompt: PROMPT, completion: COMPLETION,
    loadavg: readFileSync('/proc/loadavg', 'utf8').trim(),
    stepMs: { sft_1x256: sft1, sft_2x256: sft2, dpo_pair_2x256: dpoMs },
    dpoOverSftPerSequence: dpoMs / sft1, dpoOverSftSameTokens: dpoMs / sft2, target: 'DPO <= 2.2x the one-sequence SFT step',
    rollout: { prompts: prompts.length, G, newTokens, rolloutTokPerSec: rollTps, generateTokPerSec: genTps, ratio: rollTps / genTps },
    ppo: { ...ppo, experienceRatio: ppo.experienceTokPerSec / ppo.generateTokPerSec, rolloutRatio: ppo.rolloutTokPerSec / ppo.generateTokPerSec,
      experienceIncludes: 'sampleCompletions (1 per prompt) + actor, reference (adapters off), LoRA critic and reward-model forwards, GAE, whitening' },
    note: "DPO scores its rows through the full [2, 256, 49152] logits and a per-token cross-entropy; SFT's loss is the chunked linear + cross-entropy that never holds them",
  });
  console.log(`wrote ${path}`);
  model.dispose();
}

await main();
