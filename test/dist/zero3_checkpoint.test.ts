// Stage-3 checkpoints outlive the world size and the stage: 4 ranks at ZeRO-3 save at step 3, each
// rank writing its shard of every layer (float32 masters and AdamW's moments) while rank 0's
// model.safetensors holds only what stays whole (embeddings, head, final norm): the layers exist
// in the shards alone. 2 ranks at ZeRO-1 and one plain process resume from it (the same global
// batch of 8) and their steps 4-6 equal an uninterrupted 1-rank run's within float32
// reduction-order tolerance, so the layers' values and moments, the data position and the step came
// back right. `kestrel consolidate` reassembles the same checkpoint into an HF folder.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { assertClose, runCli, tinyTrainDir } from '../helpers.js';
import { deeperModel, folderWeights, train, weights } from './train_runs.js';

test('save on 4 ranks at ZeRO-3, resume on 2 ranks at ZeRO-1 and on 1 rank: the curve continues', async () => {
  const dir = tinyTrainDir('kestrel-zero3-ckpt-');
  deeperModel(dir, 2);
  const common = ['--schedule', 'constant', '--lr', '0.01'];
  const full = train(dir, 'full', [...common, '--grad-accum', '4', '--max-steps', '6']);
  train(dir, 'saved', [...common, '--nproc', '4', '--zero-stage', '3', '--save-every', '3']);
  const ckpt = join(dir, 'saved', 'checkpoint-3');
  const manifest = JSON.parse(readFileSync(join(ckpt, 'zero_manifest.json'), 'utf8')) as { world_size: number; stage: number; tensors: Record<string, unknown> };
  assert.deepEqual([manifest.world_size, manifest.stage], [4, 3]);
  for (let r = 0; r < 4; r++) assert.ok(existsSync(join(ckpt, `optimizer-rank${r}.safetensors`)), `rank ${r}'s shard`);
  const model = new SafetensorsFile(join(ckpt, 'model.safetensors'));
  const inModelFile = model.names;
  model.close();
  assert.ok(!inModelFile.some((n) => n.includes('.layers.')), `rank 0's model file holds layer parameters: ${inModelFile.join(', ')}`);
  assert.ok(Object.keys(manifest.tensors).includes('model.layers.1.mlp.down_proj.weight'), 'the manifest names the layers');

  for (const [out, flags] of [['two', ['--nproc', '2', '--zero-stage', '1', '--grad-accum', '2']], ['one', ['--grad-accum', '4']]] as const) {
    const resumed = train(dir, out, [...common, ...flags, '--max-steps', '6', '--resume', ckpt]);
    assertClose(resumed.losses, full.losses.slice(3), { atol: 0, rtol: 2e-5, what: `${out}: losses of steps 4-6` });
    const [a, b] = [weights(join(dir, out, 'model.safetensors')), weights(join(dir, 'full', 'model.safetensors'))];
    assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort());
    for (const [name, v] of a) assertClose(v, b.get(name)!, { atol: 2e-5, rtol: 1e-4, what: `${out}: ${name}` });
  }

  // the saving run stopped at step 3 and wrote its final model layer by layer as a sharded folder:
  // the checkpoint's masters, reassembled by consolidate, are exactly those weights
  const r = runCli(['consolidate', ckpt, '--out', join(dir, 'fp32')]);
  assert.equal(r.status, 0, r.stderr);
  const [consolidated, final] = [await folderWeights(join(dir, 'fp32')), await folderWeights(join(dir, 'saved'))];
  assert.deepEqual([...consolidated.keys()].sort(), [...final.keys()].sort());
  for (const [name, v] of final) assertClose(consolidated.get(name)!, v, { atol: 0, rtol: 0, what: `consolidated ${name}` });
});
