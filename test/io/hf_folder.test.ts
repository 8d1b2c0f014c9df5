// HF folders: sharded checkpoints through model.safetensors.index.json, and clear errors for
// missing files, bad JSON and an index that points at the wrong shard.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { CheckpointFolder } from '../../src/io/hf_folder.js';

k.setDefaultBackend('ref');

function shardedFolder(): string {
  const dir = mkdtempSync(join(tmpdir(), 'kestrel-shards-'));
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ model_type: 'llama' }));
  k.tidy(() => {
    k.saveSafetensors(join(dir, 'model-00001-of-00002.safetensors'), { a: k.tensor([1, 2]), b: k.tensor([[3]]) });
    k.saveSafetensors(join(dir, 'model-00002-of-00002.safetensors'), { c: k.tensor([4, 5, 6], { dtype: 'bfloat16' }) });
  });
  const weight_map = { a: 'model-00001-of-00002.safetensors', b: 'model-00001-of-00002.safetensors', c: 'model-00002-of-00002.safetensors' };
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map }));
  return dir;
}

test('reads tensors from whichever shard holds them', () => {
  const f = new CheckpointFolder(shardedFolder());
  assert.deepEqual(f.names.sort(), ['a', 'b', 'c']);
  assert.deepEqual(f.tensor('c').toArray(), [4, 5, 6]);
  assert.deepEqual(f.tensor('b').toArray(), [[3]]);
  assert.equal(f.info('c').dtype, 'bfloat16');
  f.close();
});

test('bad folders name the file and the problem', () => {
  const dir = shardedFolder();
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { a: 'model-00002-of-00002.safetensors' } }));
  assert.throws(() => new CheckpointFolder(dir), /'a' is mapped to .*model-00002-of-00002.safetensors, which does not contain it/);
  writeFileSync(join(dir, 'config.json'), '{"model_type": ');
  assert.throws(() => new CheckpointFolder(dir), /config.json: invalid JSON/);
  const empty = mkdtempSync(join(tmpdir(), 'kestrel-empty-'));
  writeFileSync(join(empty, 'config.json'), '{}');
  assert.throws(() => new CheckpointFolder(empty), /no model.safetensors or model.safetensors.index.json/);
  assert.throws(() => new CheckpointFolder(join(empty, 'nope')), /model folder not found/);
});
