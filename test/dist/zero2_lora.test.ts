// LoRA and QLoRA under ZeRO stage 2: only the adapters train (float32), so only they are
// bucketed, reduce-scattered and sharded; the frozen base (float, or NF4-quantized for QLoRA) stays
// whole on every rank. 2 ranks equal 1 rank × grad-accum 2 within float32 reduction-order
// tolerance (the clipping norm is summed from the ranks' shards).
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { assertClose, runCli, tinyTrainDir } from '../helpers.js';
import { train, weights } from './train_runs.js';

for (const variant of ['lora', 'qlora'] as const) {
  test(`${variant === 'lora' ? 'LoRA' : 'QLoRA (NF4 base)'} at ZeRO-2 on 2 ranks equals 1 rank × grad-accum 2`, () => {
    const dir = tinyTrainDir(`kestrel-zero2-${variant}-`);
    train(dir, 'base', ['--max-steps', '1']); // a saved model folder to fine-tune
    writeFileSync(join(dir, 'ds.json'), JSON.stringify({ zero_optimization: { stage: 2, reduce_bucket_size: 100 } }));
    const adapter = (out: string, extra: string[]): Map<string, Float64Array> => {
      const r = runCli(['finetune', '--model', join(dir, 'base'), '--data', join(dir, 'train.jsonl'), '--output', join(dir, out), '--lora-r', '4',
        '--max-steps', '3', '--batch-size', '2', '--seq-len', '10', '--eval-fraction', '0', '--dtype', 'fp32', '--lr', '1e-2', '--clip', '0.05', '--quiet',
        ...(variant === 'qlora' ? ['--qlora'] : []), ...extra]);
      assert.equal(r.status, 0, r.stderr);
      return weights(join(dir, out, 'adapter_model.safetensors'));
    };
    const one = adapter('one', ['--grad-accum', '2']);
    const two = adapter('two', ['--nproc', '2', '--deepspeed', join(dir, 'ds.json')]);
    assert.deepEqual([...two.keys()].sort(), [...one.keys()].sort());
    let moved = 0;
    for (const [name, v] of two) {
      assertClose(v, one.get(name)!, { atol: 1e-6, rtol: 1e-5, what: name });
      if (name.includes('lora_B')) moved += v.reduce((s, x) => s + Math.abs(x), 0);
    }
    assert.ok(moved > 0, 'the adapters trained (lora_B starts at zero)');
  });
}
