// The preference losses against TRL 1.13's own trainers on fixed log-probs
// (../shared/fixtures/preference/losses.json): per-example and mean losses, implicit rewards,
// TRL's logged metrics and the gradients w.r.t. the log-probs, in float64 on the reference
// backend; plus central differences (float64) for every loss type on random log-probs.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { DPO_LOSS_TYPES, type DpoLossType, type DpoOptions, dpoLoss } from '../../src/preference/dpo_loss.js';
import { type CpoLossType, cpoLoss, cpoUsesAverageLogps } from '../../src/preference/cpo_loss.js';
import { orpoLoss, orpoMetrics } from '../../src/preference/orpo_loss.js';
import { type KtoLossType, ktoLoss, ktoMetrics } from '../../src/preference/kto_loss.js';
import { pairMetrics } from '../../src/preference/metrics.js';
import { pairwiseRewardLoss } from '../../src/preference/reward_loss.js';
import { assertClose, gradcheck, refLeaf } from '../helpers.js';
import { fixture } from '../fixtures.js';

const fx = fixture('preference', 'losses.json');
type Entry = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const golden = fx.skip ? null : (JSON.parse(readFileSync(fx.path, 'utf8')) as Record<string, any>); // eslint-disable-line @typescript-eslint/no-explicit-any

const arr = (t: k.Tensor): number[] => Array.from(t.toTypedArray() as Float64Array);
const f64 = (xs: readonly number[], requiresGrad = false): k.Tensor => k.tensor(xs, { dtype: 'float64', backend: 'ref', requiresGrad });
const close = (got: k.Tensor | number[] | number, want: number[] | number, what: string, rtol = 1e-12): void =>
  assertClose(typeof got === 'number' ? [got] : got, typeof want === 'number' ? [want] : want, { atol: 1e-15, rtol, what });

function metricsClose(got: Record<string, number>, want: Record<string, number>, what: string, rtol = 1e-12): void {
  for (const [name, v] of Object.entries(want)) {
    assert.ok(name in got, `${what}: metric ${name} missing (have ${Object.keys(got).join(', ')})`);
    close(got[name], v, `${what} ${name}`, rtol);
  }
}

/** The batch's four log-prob vectors as leaves (policy ones with grad) and the lengths. */
function batchLeaves() {
  const b = golden!.batch;
  return {
    policyChosen: f64(b.policy_chosen_logps, true), policyRejected: f64(b.policy_rejected_logps, true),
    referenceChosen: f64(b.reference_chosen_logps), referenceRejected: f64(b.reference_rejected_logps),
    chosenLengths: f64(b.chosen_lengths), rejectedLengths: f64(b.rejected_lengths),
  };
}

test('DPO: every loss type equals TRL 1.13 (loss, per example, rewards, metrics, gradients)', { skip: fx.skip }, () => {
  const dpo = golden!.dpo as Record<string, Entry>;
  const seen = new Set<string>();
  for (const [name, e] of Object.entries(dpo)) {
    const type = e.config.loss_type[0] as DpoLossType;
    seen.add(type);
    const opts: DpoOptions = { lossType: type, beta: e.config.beta, discopopTau: e.config.discopop_tau };
    if (name === 'sigmoid_label_smoothing_0.1') {
      // TRL 1.13's sigmoid ignores label_smoothing (README): its golden equals plain sigmoid; we refuse the no-op option
      assert.throws(() => dpoLoss(batchLeaves(), { ...opts, labelSmoothing: 0.1 }), /has no effect on loss type 'sigmoid'.*robust/);
      close(e.per_example_loss, dpo.sigmoid.per_example_loss, 'TRL sigmoid with label smoothing = sigmoid', 0);
    } else opts.labelSmoothing = e.config.label_smoothing;
    const lp = batchLeaves();
    const out = dpoLoss(lp, opts);
    // TRL's exo_pair values and gradients match the float64 formula with label smoothing
    // 0.000999999904 instead of 1e-3 (solved from its d=0 gradient: a rounding of ls inside TRL that
    // the README does not pin down), so they agree to ~5e-8; every other type agrees to 1e-10
    const rtol = type === 'exo_pair' ? 1e-7 : 1e-10;
    close(out.perExample, e.per_example_loss, `${name} per-example loss`, rtol);
    close(out.loss.item(), e.loss, `${name} loss`, rtol);
    close(out.chosenRewards, e.chosen_rewards, `${name} chosen rewards`);
    close(out.rejectedRewards, e.rejected_rewards, `${name} rejected rewards`);
    metricsClose(pairMetrics({ ...out, chosenLogps: lp.policyChosen, rejectedLogps: lp.policyRejected }), e.metrics, name);
    out.loss.backward();
    close(lp.policyChosen.grad!, e.grad_policy_chosen_logps, `${name} d/d policy chosen`, Math.max(rtol, 1e-9));
    close(lp.policyRejected.grad!, e.grad_policy_rejected_logps, `${name} d/d policy rejected`, Math.max(rtol, 1e-9));
  }
  assert.deepEqual([...seen].sort(), [...DPO_LOSS_TYPES].sort(), 'the fixture covers every loss type we offer');
});

test('CPO and SimPO equal TRL 1.13 (average log-probs for simpo/ipo, cpo_alpha NLL term)', { skip: fx.skip }, () => {
  const b = golden!.batch;
  for (const [name, e] of Object.entries(golden!.cpo as Record<string, Entry>)) {
    const type = e.config.loss_type as CpoLossType;
    assert.equal(cpoUsesAverageLogps(type), e.uses_average_logps, `${name}: average log-probs`);
    // the log-probs TRL fed to cpo_loss: summed, or divided by the lengths (the fixture records both)
    const avg = (xs: number[], ls: number[]): number[] => xs.map((x, i) => x / ls[i]);
    const c = cpoUsesAverageLogps(type) ? avg(b.policy_chosen_logps, b.chosen_lengths) : b.policy_chosen_logps;
    const r = cpoUsesAverageLogps(type) ? avg(b.policy_rejected_logps, b.rejected_lengths) : b.policy_rejected_logps;
    close(c, e.policy_chosen_logps_used, `${name} chosen log-probs used`, 1e-15);
    const [chosenLogps, rejectedLogps, nll] = [f64(c, true), f64(r, true), k.tensor(e.nll_loss_input, { dtype: 'float64', backend: 'ref', requiresGrad: true })];
    const out = cpoLoss({ chosenLogps, rejectedLogps, nll }, { lossType: type, beta: e.config.beta, simpoGamma: e.config.simpo_gamma, cpoAlpha: e.config.cpo_alpha, labelSmoothing: e.config.label_smoothing });
    close(out.perExample, e.per_example_loss, `${name} per-example`, 1e-9);
    close(out.loss.item(), e.loss, `${name} loss`, 1e-10);
    close(out.chosenRewards, e.chosen_rewards, `${name} chosen rewards`);
    const m = { ...pairMetrics({ ...out, chosenLogps, rejectedLogps }), nll_loss: nll.item() };
    metricsClose(m, e.metrics, name, 1e-7); // TRL logs accuracies as float32 (0.3333333432674408)
    out.loss.backward();
    // d loss / d(used log-probs); TRL's gradient is w.r.t. the summed log-probs it was given, i.e. ours / length for averaged types
    const perSum = (g: k.Tensor, ls: number[]): number[] => arr(g).map((x, i) => (cpoUsesAverageLogps(type) ? x / ls[i] : x));
    close(perSum(chosenLogps.grad!, b.chosen_lengths), e.grad_policy_chosen_logps, `${name} d/d chosen`, 1e-6);
    close(perSum(rejectedLogps.grad!, b.rejected_lengths), e.grad_policy_rejected_logps, `${name} d/d rejected`, 1e-6);
    if (e.config.cpo_alpha !== 0) close(nll.grad!.item(), e.grad_nll_loss, `${name} d/d nll`);
  }
});

test('ORPO equals TRL 1.13 (float32 odds-ratio term)', { skip: fx.skip }, () => {
  const e = golden!.orpo.orpo as Entry;
  const [chosenLogps, rejectedLogps] = [f64(e.policy_chosen_avg_logps, true), f64(e.policy_rejected_avg_logps, true)];
  const nll = k.tensor(e.nll_loss_input, { dtype: 'float64', backend: 'ref', requiresGrad: true });
  const out = orpoLoss({ chosenLogps, rejectedLogps, nll }, { beta: e.config.beta });
  const f32 = 2e-6; // TRL rounds this term to float32; we keep float64
  close(out.logOdds, e.log_odds_per_example, 'log odds', f32);
  close(out.perExample, e.or_term_per_example.map((x: number) => -x), 'odds-ratio term', f32);
  close(out.loss.item(), e.loss, 'loss', 1e-7);
  close(out.chosenRewards, e.chosen_rewards, 'chosen rewards', f32);
  const m = { ...pairMetrics({ ...out, chosenLogps, rejectedLogps }), ...orpoMetrics(out.logOdds), nll_loss: nll.item() };
  metricsClose(m, e.metrics, 'orpo', f32);
  out.loss.backward();
  const b = golden!.batch;
  close(arr(chosenLogps.grad!).map((x, i) => x / b.chosen_lengths[i]), e.grad_policy_chosen_logps, 'd/d chosen', 1e-5);
  close(arr(rejectedLogps.grad!).map((x, i) => x / b.rejected_lengths[i]), e.grad_policy_rejected_logps, 'd/d rejected', 1e-5);
  close(nll.grad!.item(), e.grad_nll_loss, 'd/d nll');
});

test('KTO equals TRL 1.13 (clamped KL estimate, weights, apo_zero_unpaired)', { skip: fx.skip }, () => {
  for (const [name, e] of Object.entries(golden!.kto as Record<string, Entry>)) {
    const i = e.inputs;
    const policyLogps = f64(i.policy_logps, true);
    const inputs = { policyLogps, referenceLogps: f64(i.reference_logps), label: i.label as boolean[], policyKLLogps: f64(i.policy_KL_logps), referenceKLLogps: f64(i.reference_KL_logps) };
    const out = ktoLoss(inputs, { lossType: e.config.loss_type as KtoLossType, beta: e.config.beta, desirableWeight: e.config.desirable_weight, undesirableWeight: e.config.undesirable_weight });
    close(out.kl, e.kl, `${name} kl`);
    close(out.perExample, e.per_example_loss_weighted, `${name} per-example`, 1e-10);
    close(out.loss.item(), e.loss, `${name} loss`, 1e-10);
    close(out.rewards, e.rewards, `${name} rewards`);
    metricsClose(ktoMetrics(out, policyLogps, inputs.label), e.metrics, name);
    out.loss.backward();
    close(policyLogps.grad!, e.grad_policy_logps, `${name} d/d policy`, 1e-9);
  }
});

// Central differences on random log-probs away from kinks (hinge's relu, ties): every loss type's
// gradient w.r.t. both policy log-probs is its float64 derivative.
test('gradcheck: every DPO, CPO, ORPO, KTO and reward loss type (float64 finite differences)', () => {
  const ref = (seed: number): k.Tensor => k.tensor(refLeaf([5], seed, -30, -5).toTypedArray(), { dtype: 'float64', backend: 'ref' });
  const lengths = f64([3, 5, 4, 7, 2]);
  for (const lossType of DPO_LOSS_TYPES) {
    const pc = refLeaf([5], 1, -30, -5);
    const pr = refLeaf([5], 2, -30, -5);
    const labelSmoothing = lossType === 'robust' || lossType === 'exo_pair' ? 0.1 : 0;
    gradcheck((c, r) => dpoLoss({ policyChosen: c, policyRejected: r, referenceChosen: ref(3), referenceRejected: ref(4), chosenLengths: lengths, rejectedLengths: lengths }, { lossType, labelSmoothing }).perExample, [pc, pr], { what: `dpo ${lossType}` });
  }
  for (const lossType of ['sigmoid', 'hinge', 'ipo', 'simpo'] as const) {
    gradcheck((c, r) => cpoLoss({ chosenLogps: c, rejectedLogps: r }, { lossType, cpoAlpha: 0, labelSmoothing: 0.1 * Number(lossType !== 'hinge') }).perExample, [refLeaf([5], 5, -3, -0.1), refLeaf([5], 6, -3, -0.1)], { what: `cpo ${lossType}` });
  }
  const nll = k.tensor(1.5, { dtype: 'float64', backend: 'ref' });
  gradcheck((c, r) => orpoLoss({ chosenLogps: c, rejectedLogps: r, nll }).perExample, [refLeaf([5], 7, -3, -0.1), refLeaf([5], 8, -3, -0.1)], { what: 'orpo' });
  for (const lossType of ['kto', 'apo_zero_unpaired'] as const) {
    gradcheck((p) => ktoLoss({ policyLogps: p, referenceLogps: ref(9), label: [true, false, true, false, false], policyKLLogps: ref(10), referenceKLLogps: ref(11) }, { lossType, undesirableWeight: 1.5 }).perExample, [refLeaf([5], 12, -30, -5)], { what: `kto ${lossType}` });
  }
  const margin = f64([0.5, 0, 1, 0.25, 2]);
  gradcheck((c, r) => pairwiseRewardLoss(c, r, margin), [refLeaf([5], 13, -3, 3), refLeaf([5], 14, -3, 3)], { what: 'bradley-terry' });
});

test('logSigmoid: finite at huge margins, exact derivative 1/2 at 0, equals log(sigmoid(x)) where that is representable', () => {
  const x = f64([-1000, -40, -1, 0, 1e-8, 2.5, 40, 1000], true);
  const y = k.logSigmoid(x);
  const want = [-1000, -40 - Math.log1p(Math.exp(-40)), -Math.log1p(Math.E), -Math.LN2, -Math.log1p(Math.exp(-1e-8)), -Math.log1p(Math.exp(-2.5)), -Math.log1p(Math.exp(-40)), -0];
  close(y, want, 'logSigmoid', 1e-14);
  y.sum().backward();
  close(x.grad!, [-1000, -40, -1, 0, 1e-8, 2.5, 40, 1000].map((v) => 1 / (1 + Math.exp(v))), 'd logSigmoid = sigmoid(-x)', 1e-12);
});

test('losses refuse bad options and shapes with messages that name them', () => {
  const v = f64([-1, -2]);
  const lp = { policyChosen: v, policyRejected: v, referenceChosen: v, referenceRejected: v };
  assert.throws(() => dpoLoss(lp, { lossType: 'nope' as DpoLossType }), /unknown loss type 'nope'/);
  assert.throws(() => dpoLoss(lp, { lossType: 'ipo' }), /chosenLengths and rejectedLengths/);
  assert.throws(() => dpoLoss(lp, { lossType: 'exo_pair' }), /labelSmoothing > 0/);
  assert.throws(() => dpoLoss({ ...lp, referenceChosen: f64([1, 2, 3]) }), /must all be \[2\]/);
  assert.throws(() => cpoLoss({ chosenLogps: v, rejectedLogps: v }), /cpoAlpha is 1.*nll/);
  assert.throws(() => ktoLoss({ policyLogps: v, referenceLogps: v, label: [true, false] }), /needs policyKLLogps/);
  assert.throws(() => pairwiseRewardLoss(v, f64([1])), /must all be \[B\]/);
});
