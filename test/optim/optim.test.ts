// Optimizers (on ref and every native device) against steps computed by hand from PyTorch's
// formulas, schedule values at chosen steps, global-norm clipping, and the loss scaler's skip /
// back-off / growth sequence under DeepSpeed's documented rules.
import { ALL_DEVICES, skipUnless } from '../devices.js';
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';
import { assertClose } from '../helpers.js';

const backends = ['ref', ...ALL_DEVICES] as const;
const { AdamW, SGD, Lion, LossScaler, clipGradNorm, schedules: S } = k.optim;

function param(backend: string, values: number[], grad: number[]): k.Tensor {
  const p = k.keep(k.tensor(values, { backend, requiresGrad: true }));
  p.grad = k.keep(k.tensor(grad, { backend }));
  return p;
}

for (const backend of backends) {
  describe(`optimizers (${backend})`, { skip: backend === 'ref' ? false : skipUnless(backend) }, () => {
    test('AdamW: two steps by hand', () => {
      const p = param(backend, [1, -2], [0.5, -1]);
      const opt = new AdamW([p], { lr: 0.1, betas: [0.9, 0.99], eps: 1e-8, weightDecay: 0.1 });
      const x = [1, -2];
      const m = [0, 0];
      const v = [0, 0];
      for (let t = 1; t <= 2; t++) {
        const g = [0.5, -1];
        for (let i = 0; i < 2; i++) {
          x[i] *= 1 - 0.1 * 0.1;
          m[i] = 0.9 * m[i] + 0.1 * g[i];
          v[i] = 0.99 * v[i] + 0.01 * g[i] * g[i];
          x[i] -= (0.1 / (1 - 0.9 ** t)) * (m[i] / (Math.sqrt(v[i]) / Math.sqrt(1 - 0.99 ** t) + 1e-8));
        }
        opt.step();
      }
      assertClose(p, x, { atol: 1e-6, rtol: 1e-6 });
      assert.ok(k.memory.stats().current.optimizer >= 16, 'moments counted as optimizer memory');
      opt.dispose();
      p.dispose();
    });

    test('SGD with momentum and Nesterov, coupled weight decay', () => {
      const p = param(backend, [1], [2]);
      const opt = new SGD([p], { lr: 0.1, momentum: 0.9, nesterov: true, weightDecay: 0.5 });
      // step 1: g = 2 + 0.5*1 = 2.5, buf = 2.5, nesterov g = 2.5 + 0.9*2.5 = 4.75, p = 1 - 0.475 = 0.525
      opt.step();
      assertClose(p, [0.525], { atol: 1e-6 });
      // step 2: g = 2 + 0.2625 = 2.2625, buf = 0.9*2.5 + 2.2625 = 4.5125, g' = 2.2625 + 4.06125 = 6.32375
      opt.step();
      assertClose(p, [0.525 - 0.632375], { atol: 1e-6 });
      opt.dispose();
      p.dispose();
    });

    test('Lion: sign of the interpolated momentum', () => {
      const p = param(backend, [1, 1], [0.3, -0.2]);
      const opt = new Lion([p], { lr: 0.1, betas: [0.9, 0.99], weightDecay: 1 });
      opt.step(); // m = 0: c = 0.1 g -> sign(g); p = 1 * 0.9 - 0.1 sign(g)
      assertClose(p, [0.8, 1.0], { atol: 1e-6 });
      opt.dispose();
      p.dispose();
    });

    test('clipGradNorm scales every gradient by max_norm / norm', () => {
      const a = param(backend, [0, 0], [3, 0]);
      const b = param(backend, [0], [4]);
      const norm = clipGradNorm([a, b], 1);
      assert.equal(norm, 5);
      assertClose(a.grad!, [3 / (5 + 1e-6), 0], { atol: 1e-6 });
      assertClose(b.grad!, [4 / (5 + 1e-6)], { atol: 1e-6 });
      assert.equal(clipGradNorm([a, b], 10) < 1.0001, true, 'below max: unchanged');
      a.dispose();
      b.dispose();
    });
  });
}

describe('schedules', () => {
  test('values at chosen steps', () => {
    assert.equal(S.linear(1, 10, 110)(5), 0.5);
    assert.equal(S.linear(1, 10, 110)(60), 0.5);
    assert.equal(S.linear(1, 10, 110)(110), 0);
    assert.equal(S.cosine(2, 0, 100)(50), 1);
    assert.ok(Math.abs(S.cosine(2, 0, 100, 0.2)(100) - 0.2) < 1e-12);
    assert.equal(S.constant(3, 4)(2), 1.5);
    assert.equal(S.wsd(1, 10, 100, 20)(50), 1);
    assert.equal(S.wsd(1, 10, 100, 20)(90), 0.5);
    // DeepSpeed WarmupLR log: min + (max - min) ln(s + 1) / ln(n)
    assert.ok(Math.abs(S.warmupLR({ warmup_min_lr: 0, warmup_max_lr: 1, warmup_num_steps: 100 })(9) - Math.log(10) / Math.log(100)) < 1e-12);
    assert.equal(S.warmupLR({ warmup_min_lr: 0, warmup_max_lr: 1, warmup_num_steps: 100, warmup_type: 'linear' })(25), 0.25);
    assert.equal(S.warmupDecayLR({ warmup_max_lr: 1, warmup_num_steps: 10, total_num_steps: 110, warmup_type: 'linear' })(60), 0.5);
    assert.ok(Math.abs(S.warmupCosineLR(1, { total_num_steps: 110, warmup_num_steps: 10, cos_min_ratio: 0 })(60) - 0.5) < 1e-12);
  });
});

describe('loss scaler (DeepSpeed rules)', () => {
  test('overflows are absorbed by hysteresis, then halve; a clean window doubles', () => {
    const s = new LossScaler({ initialScalePower: 4, lossScaleWindow: 3, hysteresis: 2, minLossScale: 2 });
    const trace: [boolean, number][] = [];
    for (const overflow of [true, true, false, false, false, true, true, true, true]) trace.push([s.update(overflow), s.scale]);
    assert.deepEqual(trace, [
      [true, 16], // first overflow: hysteresis 2 -> 1, scale kept, step skipped
      [true, 8], // second: halve
      [false, 8], // clean, iter-last = 1
      [false, 8], // 2
      [false, 16], // 3 clean steps since the overflow: double (and hysteresis restored)
      [true, 16], // absorbed again
      [true, 8],
      [true, 4],
      [true, 2],
    ]);
    // at min_loss_scale a further overflow is DeepSpeed's "Current loss scale already at minimum" error
    assert.throws(() => s.update(true), /overflow at the minimum loss scale 2/);
    assert.equal(s.scale, 2, 'never below min_loss_scale');
  });

  test('a static scale never changes but still reports overflow', () => {
    const s = new LossScaler({ lossScale: 128 });
    assert.equal(s.update(true), true);
    assert.equal(s.scale, 128);
  });
});
