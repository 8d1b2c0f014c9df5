// Reward functions for GRPO, written in TypeScript (TRL's reward_funcs): each takes the batch's
// prompts, completions and records and returns one number per completion. A rewards module is
// any .ts/.js file whose exported functions are reward functions; their rewards are summed
// (weighted) and each is logged as rewards/<name>.
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

export interface RewardInput {
  prompts: readonly string[];
  completions: readonly string[];
  /** each completion's prompt record (the data file's other fields: answer, tests, ...) */
  records: readonly Readonly<Record<string, unknown>>[];
}

/** One number per completion (NaN: this function does not apply to it; counted as 0). */
export type RewardFunction = (input: RewardInput) => number[];

/** 1 when the completion's first line, trimmed, equals the record's "answer" field, else 0. */
export const correctness: RewardFunction = ({ completions, records }) =>
  completions.map((c, i) => (String(records[i].answer ?? '').trim() !== '' && c.split('\n')[0].trim() === String(records[i].answer).trim() ? 1 : 0));

/** A format reward: 1 when the completion matches the pattern (default: one short line ending the answer), else 0. */
export function formatReward(pattern: RegExp): RewardFunction {
  return ({ completions }) => completions.map((c) => (pattern.test(c) ? 1 : 0));
}

/** A length penalty: -|length - target| / target (0 at the target length, in characters). */
export function lengthReward(target: number): RewardFunction {
  return ({ completions }) => completions.map((c) => -Math.abs(c.length - target) / target);
}

/**
 * Every exported function of a module file, by export name.
 * @example const fns = await loadRewardModule('./rewards.ts'); // { correctness, format }
 */
export async function loadRewardModule(file: string): Promise<Record<string, RewardFunction>> {
  const path = resolve(file);
  if (!existsSync(path)) throw new Error(`rewards module ${file} does not exist`);
  const mod = (await import(pathToFileURL(path).href)) as Record<string, unknown>;
  const fns = Object.entries(mod).filter((e): e is [string, RewardFunction] => typeof e[1] === 'function');
  if (!fns.length) throw new Error(`${file}: exports no functions (a rewards module exports functions ({ prompts, completions, records }) => number[])`);
  return Object.fromEntries(fns);
}

/**
 * Each function's rewards (checked: one finite number or NaN per completion) and their weighted sum.
 * @example const { total, perFunction } = scoreCompletions({ correctness }, input)
 */
export function scoreCompletions(fns: Record<string, RewardFunction>, input: RewardInput, weights: Record<string, number> = {}): { total: number[]; perFunction: Record<string, number[]> } {
  const n = input.completions.length;
  const total = new Array<number>(n).fill(0);
  const perFunction: Record<string, number[]> = {};
  for (const [name, fn] of Object.entries(fns)) {
    const r = fn(input);
    if (!Array.isArray(r) || r.length !== n || r.some((x) => typeof x !== 'number' || x === Infinity || x === -Infinity))
      throw new Error(`reward function ${name} must return ${n} numbers (one per completion, NaN to abstain), got ${JSON.stringify(r)?.slice(0, 200)}`);
    perFunction[name] = r;
    const w = weights[name] ?? 1;
    r.forEach((x, i) => (total[i] += Number.isNaN(x) ? 0 : w * x));
  }
  return { total, perFunction };
}
