// `kestrel train` end to end on a random model from a config.json and pre-tokenized data:
// DeepSpeed config mapping (and its refusals), metrics.jsonl, checkpoints, resume, the final HF
// folder, and a bad JSONL line reported as file:line before training starts.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fromDeepSpeed } from '../../src/train/run_config.js';
import { runCli } from '../helpers.js';

function setup() {
  const dir = mkdtempSync(join(tmpdir(), 'kestrel-cli-train-'));
  writeFileSync(join(dir, 'config.json'), JSON.stringify({
    model_type: 'llama', vocab_size: 32, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1,
    num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 64,
  }));
  const lines = Array.from({ length: 16 }, (_, i) => JSON.stringify({ input_ids: Array.from({ length: 10 }, (_, t) => (i + t) % 32) }));
  writeFileSync(join(dir, 'train.jsonl'), lines.join('\n') + '\n');
  writeFileSync(join(dir, 'ds.json'), JSON.stringify({
    train_micro_batch_size_per_gpu: 4, gradient_accumulation_steps: 2, gradient_clipping: 1.0,
    optimizer: { type: 'AdamW', params: { lr: 0.003, weight_decay: 0 } }, scheduler: { type: 'WarmupLR', params: { warmup_min_lr: 0, warmup_max_lr: 0.003, warmup_num_steps: 2 } },
    fp16: { enabled: true, initial_scale_power: 10 }, steps_per_print: 10, mystery_knob: 3,
  }));
  return dir;
}

test('train, checkpoint, resume and save an HF folder', () => {
  const dir = setup();
  const out = join(dir, 'out');
  const args = ['train', '--model', join(dir, 'config.json'), '--data', join(dir, 'train.jsonl'), '--output', out, '--seq-len', '10', '--deepspeed', join(dir, 'ds.json'), '--save-every', '2', '--quiet'];
  let r = runCli([...args, '--max-steps', '2']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /unknown key 'mystery_knob' ignored/);
  const lines = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(lines.length, 2);
  assert.equal(lines[0].loss_scale, 1024, 'fp16 from the DeepSpeed config, initial_scale_power 10');
  r = runCli([...args, '--max-steps', '4', '--resume', 'latest']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /trained to step 4/);
  assert.ok(existsSync(join(out, 'checkpoint-4')) && existsSync(join(out, 'model.safetensors')) && existsSync(join(out, 'config.json')));
  assert.equal(readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').length, 4);
});

test('a bad JSONL line stops the run before training with file:line', () => {
  const dir = setup();
  writeFileSync(join(dir, 'train.jsonl'), '{"input_ids": [1, 2, 3]}\n{"input_ids": [1, 2,\n');
  const r = runCli(['train', '--model', join(dir, 'config.json'), '--data', join(dir, 'train.jsonl'), '--output', join(dir, 'o'), '--max-steps', '1', '--seq-len', '8']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /train\.jsonl:2/);
  assert.ok(!existsSync(join(dir, 'o', 'metrics.jsonl')));
});

test('DeepSpeed config: ZeRO stages 0-3, batch sizes checked', () => {
  assert.deepEqual(fromDeepSpeed({ zero_optimization: { stage: 3 } }, 'ds.json').settings, { zeroStage: 3, stage3: {} }); // + parameters partitioned
  assert.throws(() => fromDeepSpeed({ zero_optimization: { stage: 'x' } }, 'ds.json'), /'zero_optimization.stage' must be 0, 1, 2 or 3, got "x"/);
  assert.deepEqual(fromDeepSpeed({ zero_optimization: { stage: 2 } }, 'ds.json').settings, { zeroStage: 2 }); // + gradients partitioned
  assert.deepEqual(fromDeepSpeed({ zero_optimization: { stage: 0 } }, 'ds.json').settings, { zeroStage: 0 }); // data parallel
  assert.deepEqual(fromDeepSpeed({ zero_optimization: { stage: 1 } }, 'ds.json').settings, { zeroStage: 1 }); // + optimizer state partitioned
  // train_batch_size counts every rank's micro-batches
  assert.equal(fromDeepSpeed({ train_batch_size: 16, train_micro_batch_size_per_gpu: 4 }, 'ds.json', 2).settings.gradAccum, 2);
  assert.throws(() => fromDeepSpeed({ train_batch_size: 8, train_micro_batch_size_per_gpu: 4, gradient_accumulation_steps: 2 }, 'ds.json', 2), /x 2 process\(es\)/);
  assert.throws(() => fromDeepSpeed({ train_batch_size: 10, train_micro_batch_size_per_gpu: 4, gradient_accumulation_steps: 2 }, 'ds.json'), /train_batch_size 10 != /);
  const { settings } = fromDeepSpeed({ train_batch_size: 16, train_micro_batch_size_per_gpu: 4, bf16: { enabled: true } }, 'ds.json');
  assert.deepEqual([settings.batchSize, settings.gradAccum, settings.dtype], [4, 4, 'bf16']);
});

test('a token id beyond the model vocabulary stops the run before training with file:line (or is skipped)', () => {
  const dir = setup();
  writeFileSync(join(dir, 'train.jsonl'), '{"input_ids": [1, 2, 3]}\n{"input_ids": [1, 32, 3]}\n{"input_ids": [4, 5, 6]}\n');
  const args = ['train', '--model', join(dir, 'config.json'), '--data', join(dir, 'train.jsonl'), '--max-steps', '1', '--seq-len', '8', '--batch-size', '2', '--quiet'];
  let r = runCli([...args, '--output', join(dir, 'o')]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /train\.jsonl:2: .*\[0, 32\)/, 'vocab_size 32 from config.json');
  assert.ok(!existsSync(join(dir, 'o', 'metrics.jsonl')));
  r = runCli([...args, '--output', join(dir, 'p'), '--skip-bad-lines']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /skipped 1 bad lines/);
});

test('--profile prints the per-kernel table of steps 2-4 with GFLOP/s and the fraction of peak', () => {
  const dir = setup();
  const r = runCli(['train', '--model', join(dir, 'config.json'), '--data', join(dir, 'train.jsonl'), '--output', join(dir, 'prof'), '--seq-len', '10',
    '--batch-size', '4', '--max-steps', '5', '--profile', '--quiet']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /profile of steps 2-4\nprofile: \d+ ms over 3 steps/);
  assert.match(r.stderr, /^kernel +phase +calls +ms +share +GFLOP\/s$/m);
  // one layer: 7 projections + the head per step, 3 steps: (7 + 1) x 3 forward GEMMs at least
  const m = /^matmul float32 +forward +(\d+) /m.exec(r.stderr);
  assert.ok(m && Number(m[1]) >= 24, r.stderr);
  // one fused AdamW call per parameter group and step: decay and no-decay groups, 3 steps
  assert.match(r.stderr, /^adamw +optimizer +6 /m);
  assert.match(r.stderr, /% of the float32 GEMM peak \(\d+ GFLOP\/s measured\)/);
  assert.match(r.stdout, /trained to step 5/);
});

test('--checkpoint-layers N: a whole number >= 0, only with --checkpointing full', async () => {
  const { resolveSettings } = await import('../../src/cli/train.js');
  const base = ['--model', 'm', '--data', 'd.jsonl', '--output', 'o'];
  assert.equal(resolveSettings([...base, '--checkpointing', 'full', '--checkpoint-layers', '20']).settings.checkpointLayers, 20);
  assert.equal(resolveSettings([...base, '--checkpointing', 'full']).settings.checkpointLayers, undefined, 'absent: every layer');
  assert.throws(() => resolveSettings([...base, '--checkpoint-layers', '3']), /--checkpoint-layers 3 needs --checkpointing full .*got --checkpointing none/);
  assert.throws(() => resolveSettings([...base, '--checkpointing', 'full', '--checkpoint-layers', '-1']), /--checkpoint-layers/);
  assert.throws(() => resolveSettings([...base, '--checkpointing', 'full', '--checkpoint-layers', '2.5']), /--checkpoint-layers/);
});
