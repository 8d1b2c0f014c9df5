// Kestrel's GGUF files in llama.cpp (node-llama-cpp 3.21.1 from peers/llama-cpp, its prebuilt CPU
// build). For every fixture family llama.cpp runs, f32 and f16 exports are read back by
// @huggingface/gguf (architecture, block count, vocabulary, tensor infos) and llama.cpp's greedy ids
// for the golden prompt equal transformers' (golden.json, f32) and Kestrel's greedy on the same
// file's weights (f16). q8_0 / q4_0 / q4_k_m files load and their next-token distribution equals
// Kestrel's on the dequantized weights within the error of llama.cpp's 8-bit activations.
// A vocabulary with a duplicate token string loads (llama.cpp aborts on duplicates). An export with
// --adapter continues as peft does with the LoRA adapter applied (its golden ids).
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { gguf } from '@huggingface/gguf';
import { loadCausalLM, savePretrained } from '../../src/models/load.js';
import { buildModel } from '../../src/models/registry.js';
import { exportGguf } from '../../src/gguf/export.js';
import { Generator } from '../../src/tensor/rng.js';
import { fixture } from '../fixtures.js';
import { exportCommand } from '../../src/cli/export.js';
import { exportFixture, fixtureWithTokenizer, kestrelGreedy, kestrelNextProbs, writeTinyTokenizer } from './fixture_folder.js';
import { llamaCpp, llamaCppGreedy, llamaCppNextProbs } from './llama_cpp_peer.js';
import { tmpdir } from 'node:os';

const models = fixture('models');
const lora = fixture('lora', 'llama-lora-q-v');

/** family folder -> GGUF architecture; Mistral's window is 8, so only the ids before it can match */
const FAMILIES: [string, string][] = [
  ['llama', 'llama'], ['llama-tied-rope-llama3', 'llama'], ['mistral-sliding-window', 'llama'], ['mixtral', 'llama'],
  ['qwen2', 'qwen2'], ['gemma', 'gemma'], ['gemma2', 'gemma2'], ['phi3', 'phi3'], ['gpt2', 'gpt2'],
];

interface Gen { prompt_ids: number[][]; new_ids: number[][] }

function golden(family: string): Gen {
  return JSON.parse(readFileSync(join(models.path, family, 'golden.json'), 'utf8')).gen as Gen;
}

/** ids predicted at positions below the sliding window (HF's query i sees keys i - w < j <= i) */
const comparable = (family: string, g: Gen): number => (family.startsWith('mistral') ? 8 - g.prompt_ids[0].length + 1 : g.new_ids[0].length);

test('node-llama-cpp is installed in peers/llama-cpp and loads its CPU build offline', async () => {
  const llama = await llamaCpp();
  assert.equal(llama.gpu, false);
});

for (const [family, arch] of FAMILIES) {
  test(`${family}: f32 and f16 GGUF read back by @huggingface/gguf; llama.cpp's greedy ids equal transformers' and Kestrel's`, { skip: models.skip }, async () => {
    const g = golden(family);
    const n = comparable(family, g);
    for (const type of ['f32', 'f16'] as const) {
      const { file, report, p } = await exportFixture(join(models.path, family), type);
      try {
        const r = await gguf(file, { allowLocalFile: true });
        const md = r.metadata as Record<string, unknown>;
        assert.equal(md['general.architecture'], arch);
        assert.equal(md[`${arch}.block_count`], p.model.config.numLayers);
        assert.equal((md['tokenizer.ggml.tokens'] as string[]).length, p.model.config.vocabSize);
        const embd = r.tensorInfos.find((t) => t.name === 'token_embd.weight')!;
        assert.deepEqual(embd.shape.map(Number), [p.model.config.hiddenSize, p.model.config.vocabSize], 'ggml ne order: [D, V]');
        assert.equal(embd.dtype, type === 'f32' ? 0 : 1);
        assert.ok(r.tensorInfos.filter((t) => t.name.endsWith('norm.weight')).every((t) => t.dtype === 0), 'norms stay f32');
        assert.equal(report.arch, arch);
        const got = await llamaCppGreedy(file, g.prompt_ids[0], n);
        if (type === 'f32') assert.deepEqual(got, g.new_ids[0].slice(0, n), `${family} f32: llama.cpp vs transformers`);
        // f16: the same weights in Kestrel (the file loaded back) decide the reference
        const back = await loadCausalLM(file);
        try {
          assert.deepEqual(got, (await kestrelGreedy(back.model, g.prompt_ids[0], n)), `${family} ${type}: llama.cpp vs Kestrel on the file's weights`);
        } finally {
          back.model.dispose();
        }
      } finally {
        p.model.dispose();
      }
    }
  });
}

/** max |p - q| over the vocabulary */
const gap = (p: Float64Array, q: Float64Array): number => p.reduce((m, v, i) => Math.max(m, Math.abs(v - q[i])), 0);

/**
 * A random Llama wide enough for 256-element K-quant super-blocks (hidden 256), weights of std 0.1 so
 * the next-token distribution is far from uniform and weight quantization visibly moves it.
 */
async function randomWideLlama(): Promise<{ dir: string; p: Awaited<ReturnType<typeof loadCausalLM>> }> {
  const dir = mkdtempSync(join(tmpdir(), 'kestrel-gguf-wide-'));
  const config = { model_type: 'llama', architectures: ['LlamaForCausalLM'], vocab_size: 256, hidden_size: 256, intermediate_size: 512, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64, rms_norm_eps: 1e-5, initializer_range: 0.1, bos_token_id: 1, eos_token_id: 2 };
  const model = buildModel(config, 'config.json', { generator: new Generator(3) });
  savePretrained(dir, { model, hfConfig: config });
  model.dispose();
  writeTinyTokenizer(dir, { vocabSize: 256, special: { 1: '<s>', 2: '</s>' }, bos: '<s>', eos: '</s>' });
  return { dir, p: await loadCausalLM(dir) };
}

test('q8_0 / q4_0 / q4_k_m: llama.cpp loads and runs them, decoding the blocks to the distribution Kestrel computes from the same file', async () => {
  const { dir, p } = await randomWideLlama();
  const prompt = [1, 40, 41, 42, 43];
  try {
    const original = kestrelNextProbs(p.model, prompt);
    for (const [type, blocks] of [['q8_0', ['Q8_0']], ['q4_0', ['Q4_0', 'Q6_K']], ['q4_k_m', ['Q4_K', 'Q6_K']]] as const) {
      const file = join(dir, `${type}.gguf`);
      const report = exportGguf(p.model, p.tokenizer!, file, { type, dir });
      for (const b of blocks) assert.ok((report.types[b] ?? 0) > 0, `${type}: ${JSON.stringify(report.types)}`);
      const back = await loadCausalLM(file);
      const dequantized = kestrelNextProbs(back.model, prompt);
      back.model.dispose();
      const llama = await llamaCppNextProbs(file, prompt, 256);
      assert.equal((await llamaCppGreedy(file, prompt, 3)).length, 3, `${type} generates`);
      // llama.cpp multiplies these blocks by 8-bit quantized activations, which moves probabilities by
      // < 0.01 here; a block decoded differently moves them as much as the weight quantization
      // itself does (0.006 for q8_0, 0.06-0.08 for the 4-bit types on this model)
      const [ours, quantEffect] = [gap(llama, dequantized), gap(dequantized, original)];
      assert.ok(ours < 0.01, `${type}: llama.cpp vs Kestrel on the file's weights: max probability gap ${ours}`);
      if (type !== 'q8_0') assert.ok(quantEffect > 5 * ours, `${type}: the 4-bit rounding (gap ${quantEffect}) must dwarf the decode difference (${ours})`);
    }
  } finally {
    p.model.dispose();
  }
});

test('a vocabulary with a duplicate token string is made unique, said, and loads in llama.cpp', { skip: models.skip }, async () => {
  // id 319 is an added token spelled 'aa', which id 256 already is
  const { file, report, p } = await exportFixture(join(models.path, 'llama-tied-rope-llama3'), 'f16', { duplicateOf: { id: 319, content: 'aa' } });
  p.model.dispose();
  assert.match(report.warnings.join('\n'), /repeats 1 token string.*319 "aa" \(first at 256\) -> "\[DUP319\]aa"/);
  const tokens = ((await gguf(file, { allowLocalFile: true })).metadata as Record<string, unknown>)['tokenizer.ggml.tokens'] as string[];
  assert.equal(new Set(tokens).size, tokens.length);
  assert.equal(tokens[256], 'aa');
  assert.equal((await llamaCppGreedy(file, [1, 5, 6], 2)).length, 2);
});

test('export --adapter merges the PEFT LoRA first: llama.cpp continues as peft does with the adapter', { skip: models.skip || lora.skip }, async () => {
  const dir = fixtureWithTokenizer(join(models.path, 'llama'));
  const file = join(dir, 'lora.gguf');
  assert.equal(await exportCommand(['--model', dir, '--adapter', lora.path, '--type', 'f32', '--out', file, '--quiet']), 0);
  const want = JSON.parse(readFileSync(join(lora.path, 'golden.json'), 'utf8')).gen_output_ids as number[][];
  const prompt = [1, 222, 154, 173, 160, 118];
  assert.deepEqual(await llamaCppGreedy(file, prompt, want[0].length - prompt.length), want[0].slice(prompt.length));
});
