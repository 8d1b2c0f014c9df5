// The tokenizer metadata Kestrel writes, read by llama.cpp: GPT-2's byte-level BPE (tokens, merges,
// pre-tokenizer 'gpt-2') and Llama 2's SentencePiece tokenizer.model (pieces, scores, token types)
// tokenize every golden string exactly as transformers does (../shared/fixtures/tokenizers, ids
// without special tokens added; special-token text parsed as special). llama.cpp's SentencePiece
// follows transformers' legacy=True behaviour, so that variant is the reference. The tokenizer
// Kestrel rebuilds from the file (tokenizer.json, or a tokenizer.model it writes) does the same.
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { exportGguf } from '../../src/gguf/export.js';
import { CausalLM } from '../../src/models/causal_lm.js';
import { decoderConfig } from '../../src/models/registry.js';
import { loadTokenizer } from '../../src/tokenizer/index.js';
import { loadCausalLM } from '../../src/models/load.js';
import { fixture } from '../fixtures.js';
import { llamaCpp } from './llama_cpp_peer.js';

const tokenizers = fixture('tokenizers');

interface Case { text: string; ids_no_special: number[] }

for (const [name, variant] of [['gpt2', null], ['llama2-sentencepiece', 'legacy_true']] as const) {
  test(`${name}: llama.cpp tokenizes the golden strings of the exported vocabulary as transformers does`, { skip: tokenizers.skip }, async () => {
    const src = join(tokenizers.path, name);
    const dir = mkdtempSync(join(tmpdir(), 'kestrel-gguf-tok-'));
    for (const f of readdirSync(src)) if (f !== 'golden.json') copyFileSync(join(src, f), join(dir, f));
    const tok = await loadTokenizer(dir);
    // the smallest model that carries the vocabulary: its weights play no part here
    const model = new CausalLM(decoderConfig({ model_type: 'llama', vocab_size: tok.length, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2, max_position_embeddings: 64 }, 'tiny'));
    const file = join(dir, 'tok.gguf');
    try {
      assert.deepEqual(exportGguf(model, tok, file, { type: 'f16', dir }).warnings, []);
    } finally {
      model.dispose();
    }
    const golden = JSON.parse(readFileSync(join(src, 'golden.json'), 'utf8'));
    const cases = (variant ? golden.variants[variant].cases : golden.cases) as Case[];
    const m = await (await llamaCpp()).loadModel({ modelPath: file });
    try {
      for (const c of cases) assert.deepEqual([...m.tokenize(c.text, true)], c.ids_no_special, JSON.stringify(c.text));
    } finally {
      await m.dispose();
    }
    // and back: the tokenizer Kestrel rebuilds from the file's metadata tokenizes them the same way
    const back = await loadCausalLM(file);
    try {
      for (const c of cases) assert.deepEqual(back.tokenizer!.encode(c.text, { addSpecialTokens: false }), c.ids_no_special, `from the GGUF: ${JSON.stringify(c.text)}`);
      assert.equal(back.tokenizer!.addBosToken, tok.addBosToken);
    } finally {
      back.model.dispose();
    }
  });
}
