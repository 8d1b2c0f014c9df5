// Advantages for the policy-gradient methods: GRPO's group-normalised rewards (Shao et al. 2024;
// TRL 1.13 GRPOTrainer._generate_and_score_completions), and PPO's generalised advantage
// estimation with whitening (Schulman et al. 2016; TRL's PPOTrainer, DeepSpeed-Chat step 3).
// Plain number arrays: these run once per rollout batch, never inside autograd.
import { meanOf as mean } from '../preference/metrics.js';

export type RewardScaling = 'group' | 'batch' | 'none';

/** Unbiased (n - 1) standard deviation; NaN for one value (torch's std, TRL's nanstd). */
const std = (xs: readonly number[]): number => {
  const m = mean(xs);
  return Math.sqrt(xs.reduce((a, x) => a + (x - m) ** 2, 0) / (xs.length - 1));
};

/**
 * GRPO advantages of N = prompts * G rewards laid out group by group (G consecutive completions
 * per prompt): A = r - mean(group), divided by std(group) + 1e-4 ('group', TRL's default), by the
 * whole batch's std + 1e-4 ('batch'), or not at all ('none'). A group whose rewards are all equal
 * gets advantage 0 (it carries no signal).
 * @example groupAdvantages([1, 0, 0.5, 1], 4) // [0.78, -1.31, -0.26, 0.78]
 */
export function groupAdvantages(rewards: readonly number[], groupSize: number, scaling: RewardScaling = 'group'): number[] {
  if (!(Number.isInteger(groupSize) && groupSize >= 2)) throw new Error(`groupAdvantages: groupSize must be an integer >= 2 (GRPO compares completions of one prompt), got ${groupSize}`);
  if (rewards.length % groupSize !== 0) throw new Error(`groupAdvantages: ${rewards.length} rewards do not split into groups of ${groupSize}`);
  const out = new Array<number>(rewards.length);
  const batchStd = std(rewards);
  for (let g = 0; g < rewards.length; g += groupSize) {
    const group = rewards.slice(g, g + groupSize);
    const m = mean(group);
    const scale = scaling === 'group' ? std(group) + 1e-4 : scaling === 'batch' ? batchStd + 1e-4 : 1;
    group.forEach((r, i) => (out[g + i] = (r - m) / scale));
  }
  return out;
}

/**
 * Generalised advantage estimation over one sequence of T steps: delta_t = r_t + gamma V_{t+1} - V_t
 * (V_T = 0 after the last step), A_t = delta_t + gamma lambda A_{t+1}; returns = A + V (the value
 * targets). TRL's PPOTrainer and DeepSpeed-Chat's get_advantages_and_returns, per sequence.
 * @example gae([0, 0, 1], [0.5, 0.5, 0.5], { gamma: 1, lambda: 0.95 })
 */
export function gae(rewards: readonly number[], values: readonly number[], opts: { gamma?: number; lambda?: number } = {}): { advantages: number[]; returns: number[] } {
  const { gamma = 1, lambda = 0.95 } = opts;
  if (rewards.length !== values.length) throw new Error(`gae: ${rewards.length} rewards but ${values.length} values (one per step)`);
  const T = rewards.length;
  const advantages = new Array<number>(T);
  let next = 0;
  for (let t = T - 1; t >= 0; t--) {
    const nextValue = t + 1 < T ? values[t + 1] : 0;
    const delta = rewards[t] + gamma * nextValue - values[t];
    next = delta + gamma * lambda * next;
    advantages[t] = next;
  }
  return { advantages, returns: advantages.map((a, t) => a + values[t]) };
}

/**
 * (x - mean) / sqrt(var + 1e-8) over the given values, with the mean added back when shiftMean
 * is false (TRL's masked_whiten; var is the unbiased variance, as there).
 * @example whiten([1, 2, 3, 4]) // mean 0, unbiased variance 1 (to 1e-8)
 */
export function whiten(xs: readonly number[], opts: { shiftMean?: boolean } = {}): number[] {
  if (xs.length < 2) throw new Error(`whiten: needs at least 2 values, got ${xs.length}`);
  const m = mean(xs);
  const v = xs.reduce((a, x) => a + (x - m) ** 2, 0) / (xs.length - 1);
  const w = xs.map((x) => (x - m) / Math.sqrt(v + 1e-8));
  return opts.shiftMean === false ? w.map((x) => x + m) : w;
}
