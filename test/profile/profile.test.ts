// k.profile on the CPU backend: the kernels and op backwards it counts are the ones the code runs
// (a stack of Linear layers: one GEMM each forward, two each backward; a biased Linear's product counted once
// whether the bias epilogue takes it or not; a tiny decoder step: one
// attention kernel per layer each way, 2L+1 norms, 7L+1 projections), times fit inside the measured span, the
// backend's own kernels are back after stop(), a paged decode step's KV-cache kernels are counted,
// and off costs one boolean branch in autograd.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { decoderConfig } from '../../src/models/registry.js';
import { pagedStep } from '../../src/infer/paged_step.js';
import { withEnv } from '../helpers.js';

const cpu = k.hasBackend('cpu') ? false : 'the native CPU backend is not built';
const row = (r: k.profile.ProfileResult, name: string, phase: k.profile.Phase) => r.kernels.find((x) => x.name === name && x.phase === phase);

test('a biased Linear taken with the bias epilogue counts its 2 M N K FLOPs; a declined call counts none', { skip: cpu }, () => {
  const [N, D] = [16, 24];
  const layer = new k.nn.Linear(D, D, { backend: 'cpu' });
  const x = k.randn([N, D], { backend: 'cpu' });
  const forward = (f: () => void) => {
    k.profile.start({ backend: 'cpu' });
    k.tidy(f);
    return k.profile.stop().kernels.filter((r) => r.phase === 'forward');
  };
  const total = (rows: k.profile.ProfileResult['kernels']) => rows.reduce((a, r) => a + r.flops, 0);
  // taken: the product is matmulBias's
  const taken = forward(() => void layer.forward(x));
  assert.equal(taken.find((r) => r.name === 'matmulBias float32')?.flops, 2 * N * D * D);
  assert.equal(total(taken), 2 * N * D * D);
  // declined (bf16 operands under autocast with a float32 bias: the CPU epilogue takes float32 only):
  // the call counts nothing and the fallback matmul counts the product, once
  const declined = forward(() => k.autocast('bfloat16', () => void layer.forward(x)));
  const call = declined.find((r) => r.name.startsWith('matmulBias'));
  assert.equal(call?.calls, 1, 'matmulBias was asked');
  assert.equal(call?.flops, 0, 'and declined');
  assert.equal(total(declined), 2 * N * D * D);
  // not asked (KESTREL_BIAS_EPILOGUE=0): the matmul alone
  assert.equal(total(withEnv('KESTREL_BIAS_EPILOGUE', '0', () => forward(() => void layer.forward(x)))), 2 * N * D * D);
  layer.dispose();
  x.dispose();
});

test('a stack of Linear layers: L matmuls forward, 2L backward, with their FLOPs; times within the span', { skip: cpu }, () => {
  const L = 3;
  const [N, D] = [8, 16];
  const layers = Array.from({ length: L }, () => new k.nn.Linear(D, D, { bias: false, backend: 'cpu' }));
  const x = k.randn([N, D], { backend: 'cpu' });
  x.requiresGrad = true; // so the first layer's backward also forms dx: 2 GEMMs per layer
  const t0 = performance.now();
  k.profile.start({ backend: 'cpu' });
  k.tidy(() => {
    let h = x;
    for (const l of layers) h = k.relu(l.forward(h));
    k.sum(h).backward();
  });
  const r = k.profile.stop();
  const measured = performance.now() - t0;
  const fwd = row(r, 'matmul float32', 'forward');
  const bwd = row(r, 'matmul float32', 'backward');
  assert.equal(fwd?.calls, L, 'one GEMM per layer forward');
  assert.equal(bwd?.calls, 2 * L, 'dx and dW per layer backward');
  // 2 N D D per product, forward and each backward product alike
  assert.equal(fwd.flops, L * 2 * N * D * D);
  assert.equal(bwd.flops, 2 * L * 2 * N * D * D);
  assert.equal(r.ops.find((o) => o.name === 'matmul')?.calls, L, 'one matmul backward closure per layer');
  const kernelMs = r.kernels.reduce((a, x) => a + x.ms, 0);
  const opMs = r.ops.reduce((a, x) => a + x.ms, 0);
  assert.ok(kernelMs <= r.wallMs && r.wallMs <= measured, `kernels ${kernelMs} ms <= span ${r.wallMs} ms <= measured ${measured} ms`);
  assert.ok(opMs <= r.wallMs, `op backwards ${opMs} ms <= span ${r.wallMs} ms`);
  assert.ok(bwd.ms <= opMs, 'backward kernels run inside the backward closures');
  const table = k.profile.report({ steps: 1, peak: false });
  assert.match(table, /^matmul float32 +forward +3 /m);
  assert.match(table, /^matmul float32 +backward +6 /m);
  assert.match(table, /products: .* GFLOP\/s over the whole span/);
  for (const l of layers) l.dispose();
  x.dispose();
});

test('a tiny decoder training step: the kernels the model runs, per layer', { skip: cpu }, () => {
  const L = 2;
  const model = new k.CausalLM(decoderConfig({
    model_type: 'llama', vocab_size: 64, hidden_size: 32, intermediate_size: 64, num_hidden_layers: L,
    num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64, tie_word_embeddings: false,
  }, 'profile test'), { backend: 'cpu' });
  model.train();
  const ids = k.randint(0, 64, [2, 12], { dtype: 'int64', backend: 'cpu' });
  k.profile.start({ backend: 'cpu' });
  k.tidy(() => model.forward({ inputIds: ids, labels: ids }).loss!.backward());
  const r = k.profile.stop();
  const calls = (name: string, phase: k.profile.Phase): number => row(r, name, phase)?.calls ?? 0;
  assert.equal(calls('attention float32', 'forward'), L);
  assert.equal(calls('attentionBackward float32', 'backward'), L);
  // input and post-attention norms per layer, and the final one
  assert.equal(calls('rmsNorm float32', 'forward'), 2 * L + 1);
  assert.equal(calls('rmsNormBackward float32', 'backward'), 2 * L + 1);
  // forward: 7 projections per layer, the LM head (logits are returned, so the plain head and
  // crossEntropy run) and the rotary tables' positions x frequencies outer product
  assert.equal(calls('matmul float32', 'forward'), 7 * L + 1 + 1);
  assert.equal(calls('crossEntropy float32', 'forward'), 1);
  // backward: dx and dW of each projection and of the head (the tables' positions need no gradient)
  assert.equal(calls('matmul float32', 'backward'), 2 * (7 * L + 1));
  assert.equal(calls('crossEntropyBackward float32', 'backward'), 1);
  assert.equal(calls('adamw', 'optimizer'), 0, 'no optimizer ran');
  assert.ok(r.ops.some((o) => o.name === 'scaledDotProductAttention' && o.calls === L));
  model.dispose();
});

test('a continuous-batching step: the paged KV-cache kernels are timed too (one write of keys and one of values, one attention per layer)', { skip: cpu }, () => {
  const L = 2;
  const model = new k.CausalLM(decoderConfig({
    model_type: 'llama', vocab_size: 64, hidden_size: 32, intermediate_size: 64, num_hidden_layers: L,
    num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64,
  }, 'profile test'), { backend: 'cpu' });
  const cache = new k.PagedKVCache({ numLayers: L, numKvHeads: 2, headDim: 8 }, 8, 4, 'cpu');
  const seq = cache.open([5, 6, 7], '');
  cache.reserve(seq, 3);
  const paged = k.getBackend('cpu').paged!;
  const own = paged.pagedAttention;
  k.profile.start({ backend: 'cpu' });
  assert.notEqual(paged.pagedAttention, own, 'timed while profiling');
  pagedStep(model, cache, [{ seq, tokens: [5, 6, 7], wantLogits: true }]);
  const r = k.profile.stop();
  assert.equal(paged.pagedAttention, own, 'the backend\'s own function after stop()');
  assert.equal(row(r, 'pagedWrite float32', 'forward')?.calls, 2 * L);
  assert.equal(row(r, 'pagedAttention float32', 'forward')?.calls, L);
  cache.dispose();
  model.dispose();
});

test('off: the backend keeps its own kernels; autograd tests one flag', { skip: cpu }, () => {
  const kernels = k.getBackend('cpu').kernels;
  const own = kernels.matmul;
  k.profile.start({ backend: 'cpu' });
  assert.notEqual(kernels.matmul, own, 'timed while profiling');
  assert.ok(k.profile.isProfiling());
  k.profile.stop();
  assert.equal(kernels.matmul, own, 'the same function object after stop(): nothing in the path when off');
  assert.throws(() => k.profile.stop(), /profile.stop: not profiling/);
  // the only profiler code on autograd's path is the branch on the recorder's boolean
  const src = readFileSync(new URL('../../src/ops/dispatch.ts', import.meta.url), 'utf8');
  const uses = src.split('\n').filter((l) => /profil|timedBackward/.test(l) && !l.startsWith('import '));
  assert.deepEqual(uses.map((l) => l.trim().replace(/ \/\/.*$/, '')), ['return profiling ? timedBackward(name, () => backward(g)) : backward(g);']);
});
