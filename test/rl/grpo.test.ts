// GRPO against TRL 1.13 (../shared/fixtures/preference/grpo.json): group-normalised advantages
// (group, batch, none, a zero-std group), and for each loss type (dapo, grpo, bnpo, dr_grpo) the
// loss, per-token loss / KL / ratio, the clip and KL metrics and the gradient w.r.t. the policy
// token log-probs; plus float64 central differences of every loss type.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { groupAdvantages } from '../../src/rl/advantages.js';
import { GRPO_LOSS_TYPES, type GrpoLossType, grpoLoss } from '../../src/rl/grpo_loss.js';
import { assertClose, gradcheck } from '../helpers.js';
import { fixture } from '../fixtures.js';

const fx = fixture('preference', 'grpo.json');
const g = fx.skip ? null : JSON.parse(readFileSync(fx.path, 'utf8'));
const f64 = (xs: number[] | number[][], requiresGrad = false): k.Tensor => k.tensor(xs, { dtype: 'float64', backend: 'ref', requiresGrad });
const flat = (xs: number[][]): number[] => xs.flat();

test('group-normalised advantages equal TRL (group, batch, none; a zero-std group gives 0)', { skip: fx.skip }, () => {
  const a = g.advantages;
  const r = g.inputs.rewards;
  // TRL's nanstd multiplies the float64 variance by count / (count - 1) computed in float32
  // (1.3333334 for groups of 4), so its std is high by ~1.5e-8 relative; ours is the exact
  // unbiased std, hence rtol 1e-7 where the std divides ('none' has no std: exact)
  const scaled = { atol: 1e-15, rtol: 1e-7 };
  assertClose(groupAdvantages(r, 4), a['scale_rewards_group (default, used for the losses)'], { ...scaled, what: 'group' });
  assertClose(groupAdvantages(r, 4, 'batch'), a.scale_rewards_batch, { ...scaled, what: 'batch' });
  assertClose(groupAdvantages(r, 4, 'none'), a.scale_rewards_none, { atol: 1e-15, rtol: 1e-12, what: 'none' });
  assertClose(groupAdvantages(a.degenerate_group_example.rewards, 4), a.degenerate_group_example.advantages, { ...scaled, what: 'degenerate group' });
  assert.throws(() => groupAdvantages([1, 2, 3], 2), /do not split into groups of 2/);
});

function inputs(requiresGrad: boolean) {
  const i = g.inputs;
  return {
    logps: f64(i.policy_per_token_logps, requiresGrad), oldLogps: f64(i.old_per_token_logps), refLogps: f64(i.ref_per_token_logps),
    // TRL's own advantages (the test above checks ours against them), so the loss is compared on equal inputs
    advantages: f64(g.advantages['scale_rewards_group (default, used for the losses)']), mask: f64(i.completion_mask),
  };
}

test('every GRPO loss type equals TRL: loss, per-token loss/KL/ratio, metrics, gradients', { skip: fx.skip }, () => {
  const seen = new Set<string>();
  for (const e of Object.values(g.losses) as Record<string, any>[]) { // eslint-disable-line @typescript-eslint/no-explicit-any
    const c = e.config;
    const type = c.loss_type as GrpoLossType;
    seen.add(type);
    const inp = inputs(true);
    const out = grpoLoss(inp, { lossType: type, beta: c.beta, epsilonLow: c.epsilon_low, epsilonHigh: c.epsilon_high, maxCompletionLength: c.max_completion_length });
    const what = (s: string) => `${type} ${s}`;
    assertClose([out.loss.item()], [e.loss], { atol: 1e-15, rtol: 1e-12, what: what('loss') });
    assertClose(out.ratio, flat(e.coef_1_ratio), { atol: 1e-15, rtol: 1e-12, what: what('ratio') });
    assertClose(out.perTokenKl!, flat(e.per_token_kl), { atol: 1e-15, rtol: 1e-12, what: what('per-token kl') });
    assertClose(out.perTokenLoss, flat(e.per_token_loss), { atol: 1e-15, rtol: 1e-12, what: what('per-token loss') });
    for (const [name, v] of Object.entries(e.metrics as Record<string, number>))
      assertClose([out.metrics[name]], [v], { atol: 1e-9, rtol: 1e-6, what: what(name) }); // TRL logs the clip ratios as float32
    out.loss.backward();
    assertClose(inp.logps.grad!, flat(e.grad_policy_per_token_logps), { atol: 1e-15, rtol: 1e-10, what: what('d/d logps') });
  }
  assert.deepEqual([...seen].sort(), [...GRPO_LOSS_TYPES].sort());
});

test('gradcheck: every GRPO loss type (float64 central differences, ratios away from the clip edges)', { skip: fx.skip }, () => {
  for (const lossType of GRPO_LOSS_TYPES) {
    const inp = inputs(true);
    // old = policy + small offsets: ratios near 1, inside and outside the clip range but not on its edges
    const old = k.tensor(inp.logps.toArray() as number[][], { dtype: 'float64', backend: 'ref' }).add(f64([[0.05, -0.3, 0.1, 0.02, -0.4], [0.3, 0.01, -0.05, 0.1, 0.1], [0.0, 0.5, -0.1, 0.07, 0.1], [0.1, 0.1, -0.02, 0.3, 0.1], [-0.06, 0.04, 0.25, -0.3, 0.1], [0.03, 0.1, 0.1, 0.1, 0.1], [0.1, -0.09, 0.03, 0.4, -0.25], [0.2, 0.08, -0.01, 0.1, 0.1]]));
    gradcheck((lp) => grpoLoss({ ...inp, logps: lp, oldLogps: old }, { lossType, beta: 0.04 }).perTokenLoss.mul(inp.mask), [inp.logps], { what: `grpo ${lossType}` });
  }
});

test('grpoLoss refuses mismatched shapes and a KL term without a reference', () => {
  const lp = f64([[-1, -2]]);
  assert.throws(() => grpoLoss({ logps: lp, advantages: f64([1, 2]), mask: f64([[1, 1]]) }), /must be \[N, T\], \[N, T\] and \[N\]/);
  assert.throws(() => grpoLoss({ logps: lp, advantages: f64([1]), mask: f64([[1, 1]]) }, { beta: 0.1 }), /needs the reference/);
});
