// The Trainer with optimizerInBackward: the same losses, gradient norms and weights as the
// ordinary step (fp32, bit for bit), a lower gradient peak, an exact resume from a checkpoint,
// and the combinations it cannot run (gradient accumulation, clipping, fp16, data-parallel ranks)
// refused or, with 'auto' (`kestrel train`'s default), run as the ordinary step.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { decoderConfig } from '../../src/models/registry.js';
import { TRAIN_DEFAULTS, resolveSettings } from '../../src/cli/train.js';
import { useOptimizerInBackward } from '../../src/train/in_backward.js';
import { runCli, tinyTrainDir } from '../helpers.js';

const config = decoderConfig({
  model_type: 'llama', vocab_size: 32, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2,
  num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64,
}, 'test config');

async function dataset(): Promise<k.data.Dataset> {
  const dir = mkdtempSync(join(tmpdir(), 'kestrel-iob-'));
  const lines = Array.from({ length: 24 }, (_, i) => JSON.stringify({ input_ids: Array.from({ length: 9 + (i % 4) }, (_, t) => (i * 5 + t * 3) % 32) }));
  writeFileSync(join(dir, 'train.jsonl'), lines.join('\n') + '\n');
  const { train } = await k.data.loadDataset(join(dir, 'train.jsonl'), { format: 'pretokenized', seqLen: 12, pack: false, seed: 1, padId: 0, eosId: 31 });
  return train;
}

function trainer(data: k.data.Dataset, extra: Partial<k.train.TrainerOptions> = {}): k.train.Trainer {
  k.manualSeed(11);
  const model = new k.CausalLM(config);
  return new k.train.Trainer({
    model, data, batchSize: 4, gradAccum: 1, maxSteps: 6, lr: 3e-3, schedule: k.optim.schedules.cosine(3e-3, 2, 6), clip: 0,
    outputDir: mkdtempSync(join(tmpdir(), 'kestrel-iob-run-')), saveEvery: 3, keepLast: 1, optimizerInBackward: true, ...extra,
  });
}

const weights = (t: k.train.Trainer): Float32Array[] => t.o.model.parameters().map((p) => p.toFloat32Array());

test('the same losses, norms and weights as the ordinary step, with a lower gradient peak', async () => {
  const data = await dataset();
  const ordinary = trainer(data, { optimizerInBackward: false });
  const fused = trainer(data);
  assert.equal(ordinary.inBackward, null);
  assert.ok(fused.inBackward);
  const [a, b] = [await ordinary.train(), await fused.train()];
  assert.deepEqual(b.map((m) => m.loss), a.map((m) => m.loss));
  assert.deepEqual(b.map((m) => m.grad_norm), a.map((m) => m.grad_norm), 'the norm summed from the same terms in the same order');
  assert.deepEqual(weights(fused), weights(ordinary));
  const params = fused.o.model.parameters().map((p) => p.numel * 4);
  for (const m of a) assert.equal(m.mem_peak.grad, params.reduce((x, y) => x + y, 0), 'ordinary: every gradient at once');
  for (const m of b) assert.ok(m.mem_peak.grad <= Math.max(...params), `in backward: one gradient at a time, got ${m.mem_peak.grad} B`);
});

test('bf16 autocast: the same losses and weights as the ordinary bf16 step', async () => {
  const data = await dataset();
  const [ordinary, fused] = [trainer(data, { optimizerInBackward: false, dtype: 'bf16', maxSteps: 3, saveEvery: 0 }), trainer(data, { dtype: 'bf16', maxSteps: 3, saveEvery: 0 })];
  assert.deepEqual((await fused.train()).map((m) => m.loss), (await ordinary.train()).map((m) => m.loss));
  assert.deepEqual(weights(fused), weights(ordinary), 'float32 master weights: the same arithmetic on the same gradients');
});

test('checkpoint save and resume stay exact', async () => {
  const data = await dataset();
  const full = trainer(data);
  const all = (await full.train()).map((m) => m.loss);
  const first = trainer(data, { maxSteps: 3 });
  const head = (await first.train()).map((m) => m.loss);
  const resumed = trainer(data, { resumeFrom: first.lastCheckpoint!, outputDir: first.o.outputDir });
  assert.equal(resumed.step, 3);
  assert.equal(resumed.optimizer.stepCount, 3, 'one optimizer step per trainer step');
  const tail = (await resumed.train()).map((m) => m.loss);
  assert.deepEqual([...head, ...tail], all);
  assert.deepEqual(weights(resumed), weights(full));
});

test('gradient accumulation, clipping and fp16 are refused with true and fall back with auto', async () => {
  const data = await dataset();
  assert.throws(() => trainer(data, { gradAccum: 2 }), /optimizerInBackward: true cannot run with gradAccum 2 \(each update needs the gradient summed over every micro-batch\)/);
  assert.throws(() => trainer(data, { clip: 1 }), /cannot run with clip 1 \(clipping by the global norm needs every gradient before the first update\)/);
  assert.throws(() => trainer(data, { dtype: 'fp16' }), /cannot run with dtype 'fp16' \(the loss scaler's overflow check/);
  const auto = trainer(data, { optimizerInBackward: 'auto', clip: 1, maxSteps: 3, saveEvery: 0 });
  assert.equal(auto.inBackward, null, 'auto with clip: the ordinary step');
  const ordinary = trainer(data, { optimizerInBackward: false, clip: 1, maxSteps: 3, saveEvery: 0 });
  assert.deepEqual((await auto.train()).map((m) => m.loss), (await ordinary.train()).map((m) => m.loss));
  assert.ok(trainer(data, { optimizerInBackward: 'auto' }).inBackward, 'auto without blockers: on');
});

test('a NaN loss stops the run before backward: nothing updated', async () => {
  const data = await dataset();
  const t = trainer(data, { saveEvery: 2 });
  const norm = t.o.model.parameters().find((p) => p.shape.length === 1)!;
  let atStep3: Float32Array[] = [];
  t.o.onStep = (m) => {
    if (m.step !== 3) return;
    k.getBackend(norm.backendName).kernels.fill(norm, NaN);
    atStep3 = weights(t);
  };
  await assert.rejects(t.train(), /step 4: the loss is NaN .*the model was not updated; the last good checkpoint is .*checkpoint-2/);
  assert.equal(t.optimizer.stepCount, 3, 'the failed step was not counted');
  assert.deepEqual(weights(t), atStep3);
});

test('a NaN gradient stops the updates where it appears and the run with them', async () => {
  const data = await dataset();
  k.manualSeed(11);
  const model = new k.CausalLM(config);
  const embed = model.namedParameters().find(([n]) => n.includes('embed_tokens'))![1];
  let step = 0;
  // registered before the Trainer's hook, so it sees the gradient first: poisons it at step 2;
  // the embedding's gradient completes last (backward ends at the input), after the other 20
  embed.registerHook((g) => void (++step === 2 && k.getBackend(g.backendName).kernels.fill(g, NaN)));
  const t = trainer(data, { model, saveEvery: 0 });
  let before: Float32Array = new Float32Array();
  t.o.onStep = () => void (before = embed.toFloat32Array());
  await assert.rejects(t.train(), /step 2: the gradient norm is NaN .*optimizer in backward had already updated 20 of 21 parameters before the first non-finite gradient \(model\.embed_tokens\.weight\)/);
  assert.deepEqual(embed.toFloat32Array(), before, 'the poisoned parameter was not updated');
  assert.ok(model.parameters().every((p) => p.toFloat32Array().every(Number.isFinite)), 'the model stays finite');
  assert.equal(k.memory.stats().current.grad, 0, 'every gradient freed');
});

test('kestrel train --optimizer-in-backward', () => {
  const base = ['--model', 'm', '--data', 'd.jsonl', '--output', 'o'];
  assert.equal(resolveSettings(base).settings.optimizerInBackward, false, 'the commands built on train keep the ordinary step');
  assert.equal(resolveSettings(base, { defaults: TRAIN_DEFAULTS }).settings.optimizerInBackward, 'auto', "kestrel train's default");
  assert.equal(resolveSettings([...base, '--optimizer-in-backward', '--clip', '0']).settings.optimizerInBackward, true);
});

test('data-parallel ranks block it: auto falls back, true is an error naming them', () => {
  assert.equal(useOptimizerInBackward({ optimizerInBackward: 'auto', clip: 0, worldSize: 2 }), false);
  assert.equal(useOptimizerInBackward({ optimizerInBackward: 'auto', clip: 0, worldSize: 1 }), true);
  assert.throws(() => useOptimizerInBackward({ optimizerInBackward: true, clip: 0, worldSize: 2 }), /cannot run with 2 data-parallel ranks \(each update needs the gradient summed over ranks\)/);
});

test('kestrel train uses it by default where nothing blocks it: the gradient peak is one weight, not all', () => {
  const dir = tinyTrainDir('kestrel-iob-cli-');
  const gradPeaks = (clip: string): number[] => {
    const out = join(dir, `out-clip${clip}`);
    const r = runCli(['train', '--model', join(dir, 'config.json'), '--data', join(dir, 'train.jsonl'), '--output', out, '--max-steps', '2', '--seq-len', '10', '--clip', clip, '--quiet']);
    assert.equal(r.status, 0, r.stderr);
    return readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { mem_peak: { grad: number } }).mem_peak.grad);
  };
  // tinyTrainDir's model: embed 32x16, q/o 16x16, k/v 8x16, gate/up/down 32x16 (x3), two norms of 16, final norm 16, lm_head 32x16
  const paramBytes = 4 * (512 + 2 * 256 + 2 * 128 + 3 * 512 + 3 * 16 + 512);
  // --clip 1 (the default) needs the global norm first: every gradient is alive at once
  for (const peak of gradPeaks('1')) assert.equal(peak, paramBytes);
  // --clip 0: each gradient is freed after its update; the largest ones are 512 floats
  for (const peak of gradPeaks('0')) assert.ok(peak <= 2 * 4 * 512 && peak > 0, `grad peak ${peak} bytes`);
});
