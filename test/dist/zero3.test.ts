// ZeRO stage 3 through the real CLI: 2 and 4 ranks, each keeping 1/N of every decoder layer and
// gathering it around its forward and backward, equal 1 rank × grad-accum N within float32
// reduction-order tolerance (the global norm is a sum of shard norms, and each micro-step's layer
// gradients are summed over ranks before the micro-steps are summed), with clipping (1.2 is
// exceeded), accumulation on the ranks and bf16 autocast. The final model is written as an HF
// sharded folder layer by layer; it loads with k.loadPretrained and equals the 1-rank model.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { assertClose, tinyTrainDir } from '../helpers.js';
import { kestrelSegments } from './ranks.js';
import { deeperModel, train, weights } from './train_runs.js';

/** The folder's parameters as loadPretrained sees them (the sharded index included). */
async function loaded(dir: string): Promise<Map<string, Float64Array>> {
  const { model } = await k.loadPretrained(dir);
  const out = new Map(model.namedParameters().map(([n, p]) => [n, Float64Array.from(p.toFloat32Array())]));
  model.dispose();
  return out;
}

for (const [ranks, accum, dtype] of [[2, 2, 'fp32'], [4, 1, 'bf16']] as const) {
  test(`ZeRO-3: ${ranks} ranks × grad-accum ${accum} (${dtype}) equal 1 rank × grad-accum ${ranks * accum}; the sharded HF folder loads and equals it`, async () => {
    const before = kestrelSegments();
    const dir = tinyTrainDir('kestrel-zero3-');
    deeperModel(dir, 3);
    const one = train(dir, 'one', ['--grad-accum', String(ranks * accum), '--dtype', dtype]);
    const many = train(dir, 'zero3', ['--nproc', String(ranks), '--zero-stage', '3', '--grad-accum', String(accum), '--dtype', dtype]);
    assert.ok(one.norms.some((n) => n > 1.2), 'clipping was exercised');
    assertClose(many.losses, one.losses, { atol: 0, rtol: 2e-6, what: 'losses' });
    assertClose(many.norms, one.norms, { atol: 1e-7, rtol: 1e-5, what: 'gradient norms' });
    assert.ok(existsSync(join(dir, 'zero3', 'model.safetensors.index.json')), 'a sharded HF folder');
    const [a, b] = [await loaded(join(dir, 'zero3')), weights(join(dir, 'one', 'model.safetensors'))];
    assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort());
    for (const [name, v] of a) assertClose(v, b.get(name)!, { atol: 1e-6, rtol: 1e-5, what: name });
    assert.deepEqual(kestrelSegments().filter((s) => !before.includes(s)), []);
  });
}
