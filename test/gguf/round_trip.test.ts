// GGUF -> Kestrel -> GGUF: a file loaded with loadPretrained('x.gguf') (config, tokenizer and weights
// rebuilt from it, HF layout restored) and exported again holds the same bytes for every tensor, for
// every fixture family at f32 and for every type Kestrel reads back exactly (f16, bf16, q8_0, q4_0).
// The loaded model reproduces transformers' greedy ids (golden.json). Metadata the model needs
// (architecture keys, tokens, merges, special ids, chat template) survives too.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { exportGguf } from '../../src/gguf/export.js';
import { GgufFile } from '../../src/gguf/reader.js';
import { loadCausalLM } from '../../src/models/load.js';
import { fixture } from '../fixtures.js';
import { exportFixture, kestrelGreedy } from './fixture_folder.js';

const models = fixture('models');
const FAMILIES = ['llama', 'llama-tied-rope-llama3', 'mistral-sliding-window', 'mixtral', 'qwen2', 'gemma', 'gemma2', 'phi3', 'gpt2'];

/** Names of tensors whose bytes differ, and metadata keys whose values differ (general.name aside). */
function differences(a: string, b: string): string[] {
  const [A, B] = [new GgufFile(a), new GgufFile(b)];
  try {
    const out: string[] = [];
    assert.deepEqual([...B.tensors.keys()].sort(), [...A.tensors.keys()].sort(), 'the same tensors');
    for (const [name, t] of A.tensors) if (t.type !== B.tensors.get(name)!.type || Buffer.compare(A.readBytes(name), B.readBytes(name)) !== 0) out.push(name);
    for (const [k, v] of A.metadata) if (k !== 'general.name' && JSON.stringify(v, (_, x) => (typeof x === 'bigint' ? String(x) : x)) !== JSON.stringify(B.metadata.get(k), (_, x) => (typeof x === 'bigint' ? String(x) : x))) out.push(k);
    return out;
  } finally {
    A.close();
    B.close();
  }
}

async function roundTrip(family: string, type: 'f32' | 'f16' | 'bf16' | 'q8_0' | 'q4_0'): Promise<string[]> {
  const { dir, file, p } = await exportFixture(join(models.path, family), type);
  p.model.dispose();
  const back = await loadCausalLM(file);
  try {
    assert.ok(back.tokenizer, 'the tokenizer is rebuilt from the metadata');
    const again = join(dir, `again.${type}.gguf`);
    exportGguf(back.model, back.tokenizer, again, { type, dir });
    return differences(file, again);
  } finally {
    back.model.dispose();
  }
}

for (const family of FAMILIES) {
  test(`${family}: f32 GGUF -> Kestrel -> GGUF keeps every tensor's bytes and the metadata; the loaded model gives transformers' greedy ids`, { skip: models.skip }, async () => {
    assert.deepEqual(await roundTrip(family, 'f32'), []);
    const g = JSON.parse(readFileSync(join(models.path, family, 'golden.json'), 'utf8')).gen as { prompt_ids: number[][]; new_ids: number[][] };
    const { file, p } = await exportFixture(join(models.path, family), 'f32');
    p.model.dispose();
    const back = await loadCausalLM(file);
    try {
      // the file runs Mistral as llama.cpp does, without its window of 8: the ids before it must match
      const n = family.startsWith('mistral') ? 8 - g.prompt_ids[0].length + 1 : g.new_ids[0].length;
      assert.deepEqual(await kestrelGreedy(back.model, g.prompt_ids[0], n), g.new_ids[0].slice(0, n));
    } finally {
      back.model.dispose();
    }
  });
}

test('f16, bf16, q8_0 and q4_0 round-trip byte for byte (qwen2: biases; gemma: 1 + w norms)', { skip: models.skip }, async () => {
  for (const family of ['qwen2', 'gemma'])
    for (const type of ['f16', 'bf16', 'q8_0', 'q4_0'] as const) assert.deepEqual(await roundTrip(family, type), [], `${family} ${type}`);
});
