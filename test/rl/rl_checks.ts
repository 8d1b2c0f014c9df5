// Checks the RL trainers share. Resume: 4 steps straight vs 2 steps, a checkpoint, and 2 more
// from it must log the same rewards for steps 3-4 (the same rollouts, drawn from the checkpointed
// generator) and end with bit-identical trainable weights. Leaks: a second whole step (rollout,
// every planned update's forward and backward) returns live storage to where the first left it.
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as k from '../../src/index.js';
import type { BatchSource } from '../../src/train/trainer.js';
import { Trainer } from '../../src/train/trainer.js';
import type { TrainStep } from '../../src/train/step.js';

export interface RlSetup<B> {
  model: k.nn.Module;
  prompts: BatchSource<B>;
  step: TrainStep<B>;
  dispose: () => void;
}

export async function assertResumeExact<B>(setup: () => Promise<RlSetup<B>>, o: { batchSize: number; lr: number; name: string }): Promise<void> {
  const run = async (out: string, maxSteps: number, resumeFrom?: string) => {
    const { model, prompts, step, dispose } = await setup();
    const rewards: number[] = [];
    const trainer = new Trainer({ model, data: prompts, step, batchSize: o.batchSize, maxSteps, lr: o.lr, outputDir: out, saveEvery: 2, resumeFrom, onStep: (m) => rewards.push(m.metrics!.reward) });
    await trainer.train();
    const w = model.namedParameters().filter(([, p]) => p.requiresGrad).map(([n, p]) => [n, [...p.toFloat32Array()]]);
    dispose();
    return { w, rewards };
  };
  const a = mkdtempSync(join(tmpdir(), `kestrel-${o.name}-a-`));
  const b = mkdtempSync(join(tmpdir(), `kestrel-${o.name}-b-`));
  const straight = await run(a, 4);
  await run(b, 2);
  const resumed = await run(b, 4, join(b, 'checkpoint-2'));
  assert.deepEqual(resumed.rewards, straight.rewards.slice(2), 'steps 3-4 sample the same completions');
  assert.deepEqual(resumed.w, straight.w, 'bit-identical trainable weights');
}

export async function assertNoLeakedStorage<B>(s: RlSetup<B>, batch: B): Promise<void> {
  const once = async () => {
    const prepared = await s.step.prepare!([batch]);
    for (const u of s.step.updates?.(prepared) ?? [prepared]) {
      s.step.accumulate(u, {});
      for (const p of s.model.parameters()) p.zeroGrad();
    }
  };
  await once(); // warm-up: caches made once
  const before = k.memory.stats();
  await once();
  const after = k.memory.stats();
  assert.equal(after.storages, before.storages);
  assert.deepEqual(after.current, before.current);
}
