// DeepSpeed configs as published (transformers' test configs, its guide's ZeRO-2 example) load
// unchanged: every zero_optimization key is read, "auto" takes the command line's value as the
// HF Trainer's (lr, batch sizes, clipping, precision, WarmupLR's warmup_max_lr = lr and
// warmup_num_steps = --warmup, reduce_bucket_size = hidden_size²), train_batch_size is checked
// against micro × accumulation × world after that, and what cannot run is a clear error naming
// the key.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { resolveSettings, schedule } from '../../src/cli/train.js';
import { resolveBucketSize, resolveStage3, zeroFromDeepSpeed } from '../../src/train/ds_zero.js';
import { fromDeepSpeed } from '../../src/train/run_config.js';

const fixture = (name: string): string => join(import.meta.dirname, '..', 'fixtures', 'deepspeed', name);
const load = (name: string): Record<string, unknown> => JSON.parse(readFileSync(fixture(name), 'utf8')) as Record<string, unknown>;
const base = ['--model', 'm', '--data', 'd.jsonl', '--output', 'o'];

test("transformers' ds_config_zero2.json: stage 2 with 2e8-element buckets, every auto from the command line", () => {
  const { settings, warnings } = fromDeepSpeed(load('ds_config_zero2.json'), 'ds_config_zero2.json', 2);
  assert.equal(settings.zeroStage, 2);
  assert.equal(settings.reduceBucketSize, 2e8);
  // the auto fields are left to the flags: none is set by the file
  for (const k of ['lr', 'batchSize', 'gradAccum', 'clip', 'dtype', 'betas', 'eps', 'weightDecay'] as const) assert.equal(settings[k], undefined, k);
  assert.equal(warnings.filter((w) => w.includes('offload')).length, 1, 'cpu offload is accepted with one note');
  assert.match(warnings.find((w) => w.includes('offload'))!, /already in host memory/);
  const r = resolveSettings([...base, '--deepspeed', fixture('ds_config_zero2.json'), '--lr', '0.003', '--batch-size', '2', '--grad-accum', '3', '--clip', '0.5', '--dtype', 'fp16', '--warmup', '4']);
  const s = r.settings;
  assert.deepEqual([s.lr, s.batchSize, s.gradAccum, s.clip, s.dtype, s.zeroStage], [0.003, 2, 3, 0.5, 'fp16', 2]);
  assert.deepEqual(s.lossScaler, { lossScale: 0, initialScalePower: 16, lossScaleWindow: 1000, hysteresis: 2, minLossScale: 1, consecutiveHysteresis: false }, 'the fp16 section holds when --dtype picks fp16');
  // WarmupLR with auto: 0 -> --lr over --warmup steps (log warmup), then --lr
  const lr = schedule(s);
  assert.equal(lr(0), 0);
  assert.equal(lr(4), 0.003);
  assert.equal(lr(100), 0.003);
});

test("the transformers guide's ZeRO-2 example (round_robin_gradients) loads; reduce_bucket_size auto is hidden_size²", () => {
  assert.equal(fromDeepSpeed(load('zero2_docs.json'), 'zero2_docs.json').settings.reduceBucketSize, 5e8);
  assert.equal(resolveBucketSize('auto', 576), 576 * 576);
  assert.equal(resolveBucketSize(1000, 576), 1000);
  assert.equal(zeroFromDeepSpeed({ stage: 2, reduce_bucket_size: 'auto' }, 'ds.json').settings.reduceBucketSize, 'auto');
});

test("transformers' ds_config_zero3.json loads unchanged: stage 3 with its prefetch, persistence and live-parameter limits", () => {
  const r = fromDeepSpeed(load('ds_config_zero3.json'), 'ds_config_zero3.json');
  assert.equal(r.settings.zeroStage, 3);
  // reduce_bucket_size 0: one parameter per bucket; prefetch 0: no prefetch; persistence 0: every layer parameter partitioned
  assert.equal(r.settings.reduceBucketSize, 1);
  assert.deepEqual(r.settings.stage3, { persistenceThreshold: 0, prefetchBucketSize: 0, maxLiveParameters: 1e9 });
  assert.ok(r.warnings.some((w) => w.includes('offload to cpu accepted')), r.warnings.join('; '));
});

test('stage 3 "auto" limits resolve as the HF Trainer sets them: persistence 10·hidden, prefetch 0.9·hidden²', () => {
  const z = zeroFromDeepSpeed({ stage: 3, stage3_param_persistence_threshold: 'auto', stage3_prefetch_bucket_size: 'auto' }, 'ds.json').settings;
  assert.deepEqual(resolveStage3(z, 64), { persistenceThreshold: 640, prefetchBucketSize: Math.floor(0.9 * 64 * 64) });
  // the unprefixed spellings DeepSpeed also reads
  assert.equal(zeroFromDeepSpeed({ stage: 3, param_persistence_threshold: 7 }, 'ds.json').settings.persistenceThreshold, 7);
});

test('zero_optimization: a typo, a wrong type, NVMe offload and ZeRO++ quantization are errors naming the key', () => {
  const z = (o: Record<string, unknown>) => () => zeroFromDeepSpeed(o, 'ds.json');
  assert.throws(z({ stage: 2, reduce_bucket_sise: 100 }), /ds\.json: unknown key 'zero_optimization\.reduce_bucket_sise' \(did you mean 'reduce_bucket_size'\?\)/);
  assert.throws(z({ stage: 2, overlap_comm: 'yes' }), /'zero_optimization\.overlap_comm' must be true or false, got "yes"/);
  assert.throws(z({ stage: 2, reduce_bucket_size: -5 }), /'zero_optimization\.reduce_bucket_size' must be a number >= 0 or "auto", got -5/);
  assert.throws(z({ stage: 2, offload_optimizer: { device: 'nvme', nvme_path: '/nvme' } }), /'zero_optimization\.offload_optimizer\.device' nvme is not supported/);
  assert.throws(z({ stage: 2, offload_param: { device: 'cpu', pin_memry: true } }), /unknown key 'zero_optimization\.offload_param\.pin_memry'/);
  assert.throws(z({ stage: 2, zero_quantized_weights: true }), /'zero_optimization\.zero_quantized_weights' = true is not supported/);
  assert.throws(z({ stage: 2, zero_quantized_gradients: true }), /'zero_optimization\.zero_quantized_gradients' = true is not supported/);
  assert.throws(z({ stage: 'x' }), /'zero_optimization\.stage' must be 0, 1, 2 or 3, got "x"/);
  // off is accepted, as are the stage-3 knobs at stage 2 (DeepSpeed ignores them there too)
  assert.deepEqual(zeroFromDeepSpeed({ stage: 1, zero_quantized_weights: false, zero_hpz_partition_size: 1, stage3_max_live_parameters: 1e9, sub_group_size: 1e9, ignore_unused_parameters: true }, 'ds.json'),
    { settings: { stage: 1 }, notes: [] });
});

test('train_batch_size is checked against micro-batch × accumulation × world after the auto values took the flags', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kestrel-ds-'));
  const ds = join(dir, 'ds.json');
  writeFileSync(ds, JSON.stringify({ train_batch_size: 16, train_micro_batch_size_per_gpu: 'auto', gradient_accumulation_steps: 'auto', zero_optimization: { stage: 2 } }));
  assert.throws(() => resolveSettings([...base, '--deepspeed', ds, '--batch-size', '2', '--grad-accum', '4']),
    /ds\.json: train_batch_size 16 != micro-batch 2 x gradient accumulation 4 x 1 process\(es\) = 8/);
  const s = resolveSettings([...base, '--deepspeed', ds, '--batch-size', '2', '--grad-accum', '8']).settings;
  assert.deepEqual([s.batchSize, s.gradAccum, s.zeroStage], [2, 8, 2]);
});
