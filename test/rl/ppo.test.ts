// PPO's pieces against hand-worked examples (the formulas of TRL's PPOTrainer and DeepSpeed-Chat):
// GAE at lambda 0, 1 and in between, whitening, the KL-penalised reward, and the clipped policy and
// value losses, whose clipping is active exactly on the tokens worked out below (gradient 0 there).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { gae, whiten } from '../../src/rl/advantages.js';
import { klPenalizedRewards, ppoPolicyLoss, ppoValueLoss } from '../../src/rl/ppo_loss.js';
import { assertClose } from '../helpers.js';

const f64 = (xs: number[], requiresGrad = false): k.Tensor => k.tensor(xs, { dtype: 'float64', backend: 'ref', requiresGrad });
const close = (got: k.Tensor | number[], want: number[], what: string): void => assertClose(got, want, { atol: 1e-12, rtol: 1e-12, what });

test('GAE by hand: rewards [0, 0, 1], values [0.5, 0.4, 0.6]', () => {
  // deltas (gamma 1, V after the end 0): [0 + 0.4 - 0.5, 0 + 0.6 - 0.4, 1 - 0.6] = [-0.1, 0.2, 0.4]
  const r = [0, 0, 1];
  const v = [0.5, 0.4, 0.6];
  close(gae(r, v, { gamma: 1, lambda: 0 }).advantages, [-0.1, 0.2, 0.4], 'lambda 0: the one-step TD errors');
  close(gae(r, v, { gamma: 1, lambda: 1 }).advantages, [0.5, 0.6, 0.4], 'lambda 1: Monte-Carlo return (1) minus V');
  // lambda 0.5: A2 = 0.4, A1 = 0.2 + 0.5 * 0.4 = 0.4, A0 = -0.1 + 0.5 * 0.4 = 0.1; returns = A + V
  const mid = gae(r, v, { gamma: 1, lambda: 0.5 });
  close(mid.advantages, [0.1, 0.4, 0.4], 'lambda 0.5');
  close(mid.returns, [0.6, 0.8, 1.0], 'returns');
  // gamma 0.5, lambda 1: A_t = sum_k 0.5^k r_{t+k} - V_t = [0.25 - 0.5, 0.5 - 0.4, 1 - 0.6]
  close(gae(r, v, { gamma: 0.5, lambda: 1 }).advantages, [-0.25, 0.1, 0.4], 'discounted');
});

test('whitening: zero mean and unit (unbiased) variance; shiftMean false keeps the mean', () => {
  const w = whiten([1, 2, 3, 4]); // mean 2.5, unbiased variance 5/3
  const s = Math.sqrt(5 / 3 + 1e-8);
  close(w, [-1.5 / s, -0.5 / s, 0.5 / s, 1.5 / s], 'whitened');
  close(whiten([1, 2, 3, 4], { shiftMean: false }), [-1.5 / s + 2.5, -0.5 / s + 2.5, 0.5 / s + 2.5, 1.5 / s + 2.5], 'mean kept');
  assert.throws(() => whiten([1]), /at least 2/);
});

test('KL-penalised rewards: -beta (logp - ref) per token, the score on the last token', () => {
  close(klPenalizedRewards([-1, -2, -0.5], [-1.5, -2, -1], 0.8, 0.1), [-0.05, 0, -0.05 + 0.8], 'rewards');
});

test('clipped policy loss: clipping active exactly on tokens 0 and 3, which get no gradient', () => {
  // ratios [1.5, 0.5, 1.1, 0.7], advantages [1, 1, -1, -1], eps 0.2:
  //   t0: -1.5 vs -1.2 -> -1.2 (clipped)   t1: -0.5 vs -0.8 -> -0.5   t2: 1.1 = 1.1 (inside)   t3: 0.7 vs 0.8 -> 0.8 (clipped)
  const logps = f64([Math.log(1.5), Math.log(0.5), Math.log(1.1), Math.log(0.7)], true);
  const out = ppoPolicyLoss({ logps, oldLogps: f64([0, 0, 0, 0]), advantages: f64([1, 1, -1, -1]), mask: f64([1, 1, 1, 1]) }, { clipRange: 0.2 });
  close([out.loss.item()], [(-1.2 - 0.5 + 1.1 + 0.8) / 4], 'loss');
  assert.equal(out.clipfrac, 0.5);
  out.loss.backward();
  // d/dlogp of -A ratio = -A ratio on unclipped tokens, 0 on clipped ones
  close(logps.grad!, [0, -0.5 / 4, 1.1 / 4, 0], 'gradient');
  const masked = ppoPolicyLoss({ logps: f64([Math.log(1.5), Math.log(0.5)]), oldLogps: f64([0, 0]), advantages: f64([1, 1]), mask: f64([0, 1]) });
  close([masked.loss.item()], [-0.5], 'a masked token takes no part');
  assert.equal(masked.clipfrac, 0);
});

test('clipped value loss: clipping active exactly where the clipped error is larger', () => {
  // old values 0.5, c 0.2 (range [0.3, 0.7]); predictions [0.9, 0.55, 0.0], returns [1, 0, 1]:
  //   t0: (0.9-1)^2 = 0.01 vs (0.7-1)^2 = 0.09 -> 0.09 (clipped, no gradient)
  //   t1: 0.3025 both (inside the range)
  //   t2: (0-1)^2 = 1 vs (0.3-1)^2 = 0.49 -> 1 (unclipped)
  const values = f64([0.9, 0.55, 0.0], true);
  const out = ppoValueLoss({ values, oldValues: f64([0.5, 0.5, 0.5]), returns: f64([1, 0, 1]), mask: f64([1, 1, 1]) }, { clipRange: 0.2 });
  close([out.loss.item()], [0.5 * (0.09 + 0.3025 + 1) / 3], 'loss');
  assertClose([out.clipfrac], [1 / 3], { atol: 1e-15, rtol: 0, what: 'clipfrac' });
  out.loss.backward();
  close(values.grad!, [0, (0.5 * 2 * 0.55) / 3, (0.5 * 2 * -1) / 3], 'gradient: 0 on the clipped token');
});
