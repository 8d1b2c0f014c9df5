// HF folders: sharded checkpoints through model.safetensors.index.json, and clear errors for
// missing files, bad JSON, an index that points at the wrong shard or outside the folder, and a
// directory where a file belongs.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
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

test('an index entry naming a file outside the model folder is refused, naming the index and the entry', () => {
  const dir = shardedFolder();
  // a real safetensors file beside the folder: reading it would succeed if the entry were followed
  const outside = join(dir, '..', `${basename(dir)}-other`);
  mkdirSync(outside);
  k.tidy(() => k.saveSafetensors(join(outside, 'model.safetensors'), { c: k.tensor([4, 5, 6], { dtype: 'bfloat16' }) }));
  const index = join(dir, 'model.safetensors.index.json');
  for (const file of [`../${basename(outside)}/model.safetensors`, join(outside, 'model.safetensors'), `sub/../../${basename(outside)}/model.safetensors`, '..\\x.safetensors']) {
    const weight_map = { a: 'model-00001-of-00002.safetensors', b: 'model-00001-of-00002.safetensors', c: file };
    writeFileSync(index, JSON.stringify({ weight_map }));
    assert.throws(() => new CheckpointFolder(dir), (e: Error) =>
      e.message.startsWith(`${index}: `) && e.message.includes(`weight_map["c"] = ${JSON.stringify(file)}`) && /outside the model folder/.test(e.message), file);
  }
});

test('a missing shard names the index, the entry and the path', () => {
  const dir = shardedFolder();
  const index = join(dir, 'model.safetensors.index.json');
  writeFileSync(index, JSON.stringify({ weight_map: { a: 'model-00001-of-00002.safetensors', c: 'model-00003-of-00003.safetensors' } }));
  assert.throws(() => new CheckpointFolder(dir), (e: Error) =>
    e.message.startsWith(`${index}: `) && e.message.includes('weight_map["c"]') && e.message.includes(join(dir, 'model-00003-of-00003.safetensors')));
});

test('a directory named model.safetensors is an error naming its path', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kestrel-dir-'));
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ model_type: 'llama' }));
  mkdirSync(join(dir, 'model.safetensors'));
  assert.throws(() => new CheckpointFolder(dir), (e: Error) => e.message.startsWith(`${join(dir, 'model.safetensors')}: `) && /directory/.test(e.message));
});
