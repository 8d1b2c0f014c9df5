// The Trainer: metrics.jsonl fields, exact resume from a checkpoint (the resumed loss curve
// equals the uninterrupted one bit for bit in fp32), atomic checkpoints with keep-last-N.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { decoderConfig } from '../../src/models/registry.js';

const config = decoderConfig({
  model_type: 'llama', vocab_size: 32, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2,
  num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64,
}, 'test config');

async function dataset(): Promise<k.data.Dataset> {
  const dir = mkdtempSync(join(tmpdir(), 'kestrel-train-'));
  const lines = Array.from({ length: 24 }, (_, i) => JSON.stringify({ input_ids: Array.from({ length: 9 + (i % 4) }, (_, t) => (i * 5 + t * 3) % 32) }));
  writeFileSync(join(dir, 'train.jsonl'), lines.join('\n') + '\n');
  const { train } = await k.data.loadDataset(join(dir, 'train.jsonl'), { format: 'pretokenized', seqLen: 12, pack: false, seed: 1, padId: 0, eosId: 31 });
  return train;
}

function trainer(data: k.data.Dataset, out: string, extra: Partial<k.train.TrainerOptions> = {}, lora = false): k.train.Trainer {
  k.manualSeed(11);
  const model = new k.CausalLM(config);
  if (lora) k.lora.injectLora(model, { r: 4, alpha: 8, targetModules: 'all-linear', init: 'gaussian' });
  return new k.train.Trainer({
    model, data, batchSize: 4, gradAccum: 2, maxSteps: 6, lr: 3e-3, schedule: k.optim.schedules.cosine(3e-3, 2, 6), clip: 1,
    outputDir: out, saveEvery: 3, keepLast: 1, ...extra,
  });
}

test('metrics.jsonl, checkpoints and an exact resume', async () => {
  const data = await dataset();
  const a = mkdtempSync(join(tmpdir(), 'kestrel-run-a-'));
  const full = (await trainer(data, a).train()).map((m) => m.loss);
  const lines = readFileSync(join(a, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(lines.length, 6);
  for (const f of ['step', 'loss', 'lr', 'grad_norm', 'loss_scale', 'tokens_per_sec', 'mem_peak']) assert.ok(f in lines[0], f);
  for (const f of ['total', 'param', 'grad', 'optimizer', 'activation', 'other']) assert.equal(typeof lines[0].mem_peak[f], 'number', f);
  assert.ok(lines[0].mem_peak.optimizer > 0 && lines[0].mem_peak.param > 0);
  assert.deepEqual(readdirSync(a).filter((n) => n.startsWith('checkpoint-')), ['checkpoint-6'], 'keep-last 1 pruned checkpoint-3');

  const b = mkdtempSync(join(tmpdir(), 'kestrel-run-b-'));
  const first = (await trainer(data, b, { maxSteps: 3 }).train()).map((m) => m.loss);
  assert.ok(existsSync(join(b, 'checkpoint-3', 'trainer_state.json')));
  const resumed = trainer(data, b, { resumeFrom: join(b, 'checkpoint-3') });
  assert.equal(resumed.step, 3);
  const rest = (await resumed.train()).map((m) => m.loss);
  assert.deepEqual([...first, ...rest], full, 'resumed loss curve equals the uninterrupted one');
});

test('LoRA checkpoints hold only the trainable tensors and resume exactly', async () => {
  const data = await dataset();
  const full = (await trainer(data, mkdtempSync(join(tmpdir(), 'kestrel-lora-a-')), {}, true).train()).map((m) => m.loss);
  const b = mkdtempSync(join(tmpdir(), 'kestrel-lora-b-'));
  const first = (await trainer(data, b, { maxSteps: 3 }, true).train()).map((m) => m.loss);
  const saved = new k.SafetensorsFile(join(b, 'checkpoint-3', 'model.safetensors'));
  assert.ok(saved.names.length > 0 && saved.names.every((n) => /lora_[AB]/.test(n)), `only adapter tensors: ${saved.names.slice(0, 3).join(', ')}...`);
  saved.close();
  const resumed = trainer(data, b, { resumeFrom: join(b, 'checkpoint-3') }, true);
  const rest = (await resumed.train()).map((m) => m.loss);
  assert.deepEqual([...first, ...rest], full, 'the frozen base comes from the model, the adapters from the checkpoint');
  assert.throws(() => trainer(data, b, { resumeFrom: join(b, 'checkpoint-6') }), /does not match the one being trained: missing \[/);
});

test('bf16 and fp16 runs track the fp32 loss curve', async () => {
  const data = await dataset();
  const run = async (dtype: 'fp32' | 'bf16' | 'fp16') => (await trainer(data, mkdtempSync(join(tmpdir(), `kestrel-${dtype}-`)), { dtype, saveEvery: 0 }).train()).map((m) => m.loss);
  const fp32 = await run('fp32');
  for (const dtype of ['bf16', 'fp16'] as const) {
    const half = await run(dtype);
    half.forEach((l, i) => assert.ok(Math.abs(l - fp32[i]) < 0.03 * fp32[i], `${dtype} step ${i + 1}: ${l} vs ${fp32[i]}`));
  }
});

test('fp16: an injected overflow skips the step and backs the scale off (DeepSpeed rules)', async () => {
  const data = await dataset();
  const t = trainer(data, mkdtempSync(join(tmpdir(), 'kestrel-overflow-')), { dtype: 'fp16', saveEvery: 0, maxSteps: 4, lossScaler: { initialScalePower: 8, hysteresis: 1, lossScaleWindow: 2 } });
  const [first] = t.o.model.parameters();
  let inject = false;
  first.registerHook((g) => {
    if (inject) k.getBackend(g.backendName).kernels.fill(g, Infinity);
  });
  const scales: (number | null)[] = [];
  const before: number[][] = [];
  t.o.onStep = (m) => scales.push(m.loss_scale);
  for (let s = 0; s < 4; s++) {
    inject = s === 1;
    before.push(Array.from(first.toFloat32Array()));
    t.o.maxSteps = s + 1;
    await t.train();
  }
  // steps 1..4 report the scale they ran with: 256, 256 (overflow -> halved), 128, 128 (2 clean -> doubled next)
  assert.deepEqual(scales, [256, 256, 128, 128]);
  assert.equal(t.scaler!.scale, 256);
  assert.deepEqual(before[2], before[1], 'the overflowing step 2 left the weights unchanged');
  assert.notDeepEqual(before[3], before[2], 'step 3 did update them (step 1 ran at warmup lr 0)');
});

test('stop() (what Ctrl-C calls) saves a checkpoint and ends the loop after the current step', async () => {
  const data = await dataset();
  const out = mkdtempSync(join(tmpdir(), 'kestrel-stop-'));
  const t = trainer(data, out, { saveEvery: 0 });
  t.o.onStep = (m) => m.step === 2 && t.stop();
  const m = await t.train();
  assert.equal(m.length, 2);
  assert.ok(existsSync(join(out, 'checkpoint-2', 'model.safetensors')));
});

test('a NaN loss stops the run naming the step; the model stays finite and the last checkpoint is kept', async () => {
  const data = await dataset();
  const out = mkdtempSync(join(tmpdir(), 'kestrel-nan-'));
  const t = trainer(data, out, { saveEvery: 2 });
  const norm = t.o.model.parameters().find((p) => p.shape.length === 1)!; // a norm weight: NaN there makes every later loss NaN
  t.o.onStep = (m) => m.step === 3 && k.getBackend(norm.backendName).kernels.fill(norm, NaN);
  const weights = (): number[] => t.o.model.parameters().filter((p) => p !== norm).flatMap((p) => Array.from(p.toFloat32Array()));
  let atStep3: number[] = [];
  const onStep = t.o.onStep;
  t.o.onStep = (m) => (onStep(m), m.step === 3 && (atStep3 = weights()));
  await assert.rejects(t.train(), /step 4: the loss is NaN .*the model was not updated; the last good checkpoint is .*checkpoint-2/);
  assert.equal(t.step, 3);
  assert.deepEqual(weights(), atStep3, 'no update from the NaN step');
  assert.deepEqual(readdirSync(out).filter((n) => n.startsWith('checkpoint-')), ['checkpoint-2']);
  assert.equal(readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').length, 3, 'the NaN step is not logged');
});

test('fp16: an overflow at the minimum loss scale is an error (DeepSpeed), not an endless run of skipped steps', () => {
  const scaler = new k.optim.LossScaler({ initialScalePower: 1, hysteresis: 1, minLossScale: 1 });
  assert.equal(scaler.update(true, 1), true); // 2 -> 1
  assert.equal(scaler.scale, 1);
  assert.throws(() => scaler.update(true, 2), /step 2: the gradients overflow at the minimum loss scale 1/);
});
