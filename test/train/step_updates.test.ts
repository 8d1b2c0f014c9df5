// TrainStep.updates: one Trainer step may make several optimizer updates (PPO's minibatches over
// epochs). With SGD on loss (w - c)^2 each update is w <- w - lr * 2 (w - c), worked out by hand
// below; the step logs the mean loss and the summed tokens of its updates.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { SGD } from '../../src/optim/sgd.js';
import { Trainer } from '../../src/train/trainer.js';
import type { TrainStep } from '../../src/train/step.js';
import { assertClose } from '../helpers.js';

class Scalar extends k.nn.Module {
  w = k.tensor([1], { dtype: 'float64', backend: 'ref', requiresGrad: true });
}

test('a step whose updates() plans 3 minibatches applies 3 SGD updates and logs their mean', async () => {
  const model = new Scalar();
  // each "batch" is the target c; updates() turns the one drawn batch into three single-target updates
  const step: TrainStep<number[]> = {
    updates: ([b]) => b.map((c) => [[c]]),
    accumulate: (micro) => {
      const c = micro[0][0];
      const loss = k.tidy(() => {
        const d = k.sub(model.w, c);
        const l = k.mul(d, d);
        l.backward();
        return l.item();
      });
      return { loss, tokens: 1, metrics: { target: c } };
    },
    evaluate: () => ({ loss: 0 }),
  };
  const data = { *batches() { for (;;) yield [3, 0, 2]; } };
  const logged: k.train.StepMetrics[] = [];
  const trainer = new Trainer({ model, data, step, optimizer: new SGD([model.w]), lr: 0.25, batchSize: 1, maxSteps: 1, onStep: (m) => logged.push(m) });
  await trainer.train();
  // w: 1 -> 1 - 0.5 (1 - 3) = 2 -> 2 - 0.5 (2 - 0) = 1 -> 1 - 0.5 (1 - 2) = 1.5; losses 4, 4, 1
  assertClose(model.w.toFloat32Array(), [1.5], { atol: 1e-12, rtol: 0, what: 'w after three updates' });
  assertClose([logged[0].loss], [(4 + 4 + 1) / 3], { atol: 1e-12, rtol: 0, what: 'mean loss' });
  assert.equal(logged[0].tokens_per_sec > 0, true);
  assertClose([logged[0].metrics!.target], [5 / 3], { atol: 1e-12, rtol: 0, what: 'mean metric' });
  assert.equal(trainer.step, 1, 'one Trainer step');
});
