// Batch invariance of a continuous-batching step (src/infer/paged_step.ts): a sequence's logits in
// a ragged batch (nine sequences: decode tokens beside a prompt chunk, up to 32 tokens a step)
// are bitwise equal to its logits when it runs alone. Why they must be: every op of the decoder
// works per token (norms, rope, the GLU, the paged attention over its own sequence), and the
// float32 Linear products with up to 32 rows sum each output in an order that does not depend on
// the other rows (native/gemm_avx512.cc / gemm_avx2.cc small-M path). So batching never changes a
// greedy token, and sampling sees the same scores.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { pagedStep, type StepInput } from '../../src/infer/paged_step.js';
import { decoderConfig } from '../../src/models/registry.js';
import { hasCpu } from '../helpers.js';

const BACKEND = hasCpu() ? 'cpu' : 'ref';
k.manualSeed(11);
// sizes off the vector widths (head dim 10, ffn 37, vocab 257) so every vector loop has a tail; GQA 4 / 2
const model = new k.CausalLM(decoderConfig({
  model_type: 'llama', vocab_size: 257, hidden_size: 40, intermediate_size: 37, num_hidden_layers: 2, num_attention_heads: 4,
  num_key_value_heads: 2, max_position_embeddings: 128, initializer_range: 0.3,
}, 'config.json'));
model.to(BACKEND);
const c = model.config;

const prompt = (len: number, seed: number): number[] => Array.from({ length: len }, (_, i) => 1 + ((i * 31 + seed * 17) % 250));
const newCache = (): k.PagedKVCache => new k.PagedKVCache({ numLayers: c.numLayers, numKvHeads: c.numKvHeads, headDim: c.headDim }, 64, 4, BACKEND);

/** The first differing element of two logit rows, or null when they are the same bits. */
function firstDifference(a: Float32Array, b: Float32Array): string | null {
  if (a.length !== b.length) return `lengths ${a.length} and ${b.length}`;
  const i = a.findIndex((x, j) => !Object.is(x, b[j]));
  return i < 0 ? null : `element ${i}: ${a[i]} vs ${b[i]}`;
}

test('a sequence\'s logits in a batched paged step are bitwise equal to its logits alone', () => {
  const prompts = Array.from({ length: 9 }, (_, s) => prompt(3 + s, s)); // nine sequences, prompts of 3..11 tokens
  const late = prompt(14, 99); // a tenth joins with a prompt chunk while the others decode
  const batched = newCache();
  const alone = newCache();
  const seqs = prompts.map((p) => batched.open(p, ''));
  const soloSeqs = prompts.map((p) => alone.open(p, ''));
  // prefill each alone in both caches (identical work), then decode 3 steps together vs one by one
  const tokens = prompts.map((p) => p.slice());
  prompts.forEach((p, s) => {
    for (const [cache, seq] of [[batched, seqs[s]], [alone, soloSeqs[s]]] as const) {
      cache.reserve(seq, p.length + 4);
      pagedStep(model, cache, [{ seq, tokens: p, wantLogits: true }]);
    }
  });
  const lateSeq = batched.open(late, '');
  const lateSolo = alone.open(late, '');
  batched.reserve(lateSeq, late.length);
  alone.reserve(lateSolo, late.length);
  for (let step = 0; step < 3; step++) {
    const next = tokens.map((t, s) => (t.length * 7 + s * 3 + step) % 257); // any next tokens: both sides feed the same
    const inputs: StepInput[] = seqs.map((seq, s) => ({ seq, tokens: [next[s]], wantLogits: true }));
    if (step === 1) inputs.splice(4, 0, { seq: lateSeq, tokens: late, wantLogits: true }); // 9 decode tokens + a 14-token chunk = 23 rows
    const together = pagedStep(model, batched, inputs);
    const single = inputs.map((x) => {
      const solo = x.seq === lateSeq ? lateSolo : soloSeqs[seqs.indexOf(x.seq)];
      return pagedStep(model, alone, [{ seq: solo, tokens: x.tokens, wantLogits: true }])[0];
    });
    inputs.forEach((x, i) => {
      const what = x.seq === lateSeq ? 'the joining prompt' : `sequence ${seqs.indexOf(x.seq)}`;
      const diff = firstDifference(together[i], single[i]);
      assert.equal(diff, null, `step ${step}, ${what}: batched and alone logits differ at ${diff}`);
    });
    next.forEach((t, s) => tokens[s].push(t));
  }
  batched.dispose();
  alone.dispose();
});
