// LoRA and QLoRA under ZeRO stage 3: the frozen base is partitioned with the adapters (a float
// base as a frozen float32 arena per layer; the QLoRA base's NF4 packed bytes and absmax scales as
// uint8 and float32 arenas: DeepSpeed's stage 3 cannot partition a 4-bit base), gathered per layer,
// and only the adapters train, reduce-scattered into their owners' shards. 2 ranks equal 1 rank ×
// grad-accum 2 within float32 reduction-order tolerance, and a rank's parameter-memory peak is
// below the single process's: half of each layer's base, plus the layer being run.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { assertClose, runCli, tinyTrainDir } from '../helpers.js';
import { type Peak, deeperModel, train, weights } from './train_runs.js';

for (const variant of ['lora', 'qlora'] as const) {
  test(`${variant === 'lora' ? 'LoRA' : 'QLoRA (NF4 base)'} at ZeRO-3 on 2 ranks equals 1 rank × grad-accum 2, with the base partitioned`, () => {
    const dir = tinyTrainDir(`kestrel-zero3-${variant}-`);
    deeperModel(dir, 3);
    train(dir, 'base', ['--max-steps', '1']); // a saved model folder to fine-tune
    const run = (out: string, extra: string[]): { adapter: Map<string, Float64Array>; losses: number[]; peaks: Peak[] } => {
      const r = runCli(['finetune', '--model', join(dir, 'base'), '--data', join(dir, 'train.jsonl'), '--output', join(dir, out), '--lora-r', '4',
        '--max-steps', '3', '--batch-size', '2', '--seq-len', '10', '--eval-fraction', '0', '--dtype', 'fp32', '--lr', '1e-2', '--clip', '0.05', '--quiet',
        ...(variant === 'qlora' ? ['--qlora'] : []), ...extra]);
      assert.equal(r.status, 0, r.stderr);
      const lines = readFileSync(join(dir, out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { loss: number; mem_peak: Peak });
      return { adapter: weights(join(dir, out, 'adapter_model.safetensors')), losses: lines.map((l) => l.loss), peaks: lines.map((l) => l.mem_peak) };
    };
    const one = run('one', ['--grad-accum', '2']);
    // no prefetch (ds_config stage3_prefetch_bucket_size 0): one gathered layer at a time
    writeFileSync(join(dir, 'ds.json'), JSON.stringify({ zero_optimization: { stage: 3, stage3_prefetch_bucket_size: 0 } }));
    const two = run('two', ['--nproc', '2', '--deepspeed', join(dir, 'ds.json')]);
    assertClose(two.losses, one.losses, { atol: 0, rtol: 2e-6, what: 'losses' });
    assert.deepEqual([...two.adapter.keys()].sort(), [...one.adapter.keys()].sort());
    let moved = 0;
    for (const [name, v] of two.adapter) {
      assertClose(v, one.adapter.get(name)!, { atol: 1e-6, rtol: 1e-5, what: name });
      if (name.includes('lora_B')) moved += v.reduce((s, x) => s + Math.abs(x), 0);
    }
    assert.ok(moved > 0, 'the adapters trained (lora_B starts at zero)');
    // 3 layers: a rank holds half of each (base and adapters) plus the one being run, and the outside
    // whole (embeddings, head) as 1 rank does: 1/2 + 1/3 of the layers, below 1 rank's whole model
    for (const [i, p] of two.peaks.entries())
      assert.ok(p.param < one.peaks[i].param, `step ${i + 1}: rank 0's parameter peak ${p.param} bytes is not below 1 rank's ${one.peaks[i].param}`);
  });
}
