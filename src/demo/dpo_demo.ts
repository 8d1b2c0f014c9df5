// The preference phase of `kestrel demo --dpo`: DPO with LoRA on the fine-tuned demo model, on pairs
// of each task's right answer (chosen) and a plausible wrong one (rejected: the sum off by one, the
// word not reversed or not sorted, another country's capital). Reports the held-out pairs' reward
// margin and ranking accuracy (TRL's rewards/margins, rewards/accuracies) before and after.
import type { Task } from './tasks.js';
import type { CausalLM } from '../models/causal_lm.js';
import { injectLora } from '../lora/peft.js';
import { AdamW } from '../optim/adamw.js';
import { constant } from '../optim/schedules.js';
import type { Tokenizer } from '../tokenizer/index.js';
import { Trainer } from '../train/trainer.js';
import { decayParamGroups } from '../train/param_groups.js';
import { completionEncoder } from '../preference/encode.js';
import { PairDataset } from '../preference/pair_dataset.js';
import { pairStep } from '../preference/pair_step.js';
import { computeReferenceLogps } from '../preference/reference.js';

/** A wrong answer a model could plausibly give: what the task asked to transform, or a near miss. */
export function wrongAnswer(t: Task, others: readonly Task[]): string {
  if (t.question.startsWith('What is')) return String(Number(t.answer) + 1);
  if (t.question.startsWith('Reverse: ') || t.question.startsWith('Sort: ')) {
    const word = t.question.slice(t.question.indexOf(': ') + 2);
    return word !== t.answer ? word : `${t.answer}${t.answer.at(-1)}`;
  }
  return others.find((o) => o.question.startsWith('Capital') && o.answer !== t.answer)?.answer ?? `${t.answer}x`;
}

/** The DPO phase's adapters (saved to <model>/dpo-adapter). */
export const DPO_LORA = { r: 16, alpha: 16, targetModules: 'all-linear' as const };

export interface DpoDemoResult {
  before: Record<string, number>;
  after: Record<string, number>;
}

/** DPO with LoRA on the train tasks' pairs; held-out pair metrics before and after. */
export async function dpoDemo(model: CausalLM, tok: Tokenizer, train: Task[], heldOut: Task[], o: { steps: number; lr?: number; say: (s: string) => void }): Promise<DpoDemoResult> {
  const encode = completionEncoder({ tokenizer: tok });
  const pairs = (tasks: Task[]) => new PairDataset(tasks.map((t, i) => {
    const prompt = [{ role: 'user', content: t.question }];
    const [chosen, rejected] = encode({ kind: 'chat', prompt, completions: [{ role: 'assistant', content: t.answer }, { role: 'assistant', content: wrongAnswer(t, tasks.slice(i + 1)) }] }, { file: 'demo', record: i + 1 });
    return { chosen, rejected };
  }), tok.padTokenId ?? 0, 4);
  const [trainPairs, evalPairs] = [pairs(train), pairs(heldOut)];
  injectLora(model, DPO_LORA);
  for (const ds of [trainPairs, evalPairs]) computeReferenceLogps(model, ds, { batchSize: 16 });
  const lr = o.lr ?? 2e-3;
  const opt = new AdamW(decayParamGroups(model, 0), { lr });
  const evals: Record<string, number>[] = [];
  const trainer = new Trainer({
    model, data: trainPairs, evalData: evalPairs, step: pairStep(model, { method: 'dpo', options: { beta: 0.1 } }), optimizer: opt, schedule: constant(lr),
    batchSize: 16, maxSteps: o.steps, clip: 1, onEval: (r) => evals.push({ loss: r.loss, ...r.metrics }),
  });
  trainer.evaluate();
  await trainer.train();
  trainer.evaluate();
  opt.dispose();
  const [before, after] = evals;
  o.say(`dpo: held-out margin ${before['rewards/margins'].toFixed(3)} -> ${after['rewards/margins'].toFixed(3)}, ranking accuracy ${before['rewards/accuracies'].toFixed(3)} -> ${after['rewards/accuracies'].toFixed(3)}`);
  return { before, after };
}
