// BERT inference inside withWeightCache (what k.embeddings.encode runs): the query/key/value
// projections become one GEMM over a cached [3D, D] weight and, under autocast, every weight is
// rounded to bf16 once per scope. Checked against the same model run outside any cache scope (the
// three-GEMM path, weights rounded per call): in float64 on the reference backend they agree to
// rounding (only the GEMM's summation blocking differs), on the CPU in float32 to float32 rounding,
// under bf16 autocast bit for bit in the rounded operands, so to the float32 GEMM's summation order.
// The cache's own rules: one cast per weight per scope, nothing left alive after it, an in-place
// weight update seen by the next scope, and weights that need their gradient never cached.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';
import type { BertModel } from '../../src/models/bert.js';
import { buildModel } from '../../src/models/registry.js';
import { cachedWeight, withWeightCache } from '../../src/ops/fused/weight_cache.js';
import { copy_ } from '../../src/ops/inplace.js';
import { assertClose, hasCpu } from '../helpers.js';

const CONFIG = {
  model_type: 'bert', vocab_size: 40, hidden_size: 16, num_hidden_layers: 2, num_attention_heads: 4,
  intermediate_size: 24, max_position_embeddings: 16, type_vocab_size: 2, pad_token_id: 0,
};
const LAYERS = CONFIG.num_hidden_layers;
const cpu = { skip: hasCpu() ? false : 'native addon not built' };

function model(backend: k.BackendName, dtype: k.DType): BertModel {
  k.manualSeed(5);
  return buildModel(CONFIG, 'test config', { dtype, backend }) as BertModel;
}

/** The last hidden state of a padded batch (rows of 6 and 3 tokens), without autograd. */
function hidden(m: BertModel, backend: k.BackendName): k.Tensor {
  return k.noGrad(() => k.tidy(() => {
    const ids = k.tensor([[5, 9, 3, 17, 2, 11], [7, 1, 30, 0, 0, 0]], { dtype: 'int64', backend });
    const mask = k.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]], { dtype: 'int64', backend });
    return m.forward({ inputIds: ids, attentionMask: mask }).lastHiddenState;
  }));
}

/** Counts the backend's GEMMs (with or without a bias epilogue) and float32 -> bf16 casts while fn runs. */
function counting<T>(backend: k.BackendName, fn: () => T): { value: T; matmuls: number; halfCasts: number } {
  const kern = k.getBackend(backend).kernels;
  const { matmul, matmulBias, copy } = kern;
  let [matmuls, halfCasts] = [0, 0];
  Object.assign(kern, {
    matmul: (...a: Parameters<typeof matmul>) => (matmuls++, matmul.apply(kern, a)),
    copy: (...a: Parameters<typeof copy>) => ((a[0].dtype === 'float32' && a[1].dtype === 'bfloat16' && halfCasts++), copy.apply(kern, a)),
  });
  if (matmulBias)
    kern.matmulBias = (...a: Parameters<typeof matmulBias>) => {
      const taken = matmulBias.apply(kern, a);
      if (taken) matmuls++;
      return taken;
    };
  try {
    return { value: fn(), matmuls, halfCasts };
  } finally {
    Object.assign(kern, { matmul, matmulBias, copy });
  }
}

function fusedEqualsPlain(backend: k.BackendName, dtype: k.DType, tol: { atol: number; rtol: number }, half = false): void {
  const m = model(backend, dtype);
  const run = <T>(f: () => T): T => (half ? k.autocast('bfloat16', f) : f());
  const plain = counting(backend, () => run(() => hidden(m, backend)));
  const fused = counting(backend, () => run(() => withWeightCache(() => hidden(m, backend))));
  // per layer: q, k, v, out, intermediate, output GEMMs plainly; one QKV GEMM fused (the pooler adds one to both)
  if (backend === 'cpu') {
    assert.equal(plain.matmuls, 6 * LAYERS + 1);
    assert.equal(fused.matmuls, 4 * LAYERS + 1);
  }
  assertClose(fused.value, plain.value, { ...tol, what: 'last hidden state' });
  plain.value.dispose();
  fused.value.dispose();
  m.dispose();
}

describe('BERT inference with cached weights = the plain forward', () => {
  test('reference backend, float64', () => fusedEqualsPlain('ref', 'float64', { atol: 1e-12, rtol: 1e-10 }));
  test('CPU backend, float32', cpu, () => fusedEqualsPlain('cpu', 'float32', { atol: 1e-5, rtol: 1e-5 }));
  // the same bf16 operands; only the float32 accumulation order of the wider QKV GEMM may differ
  test('CPU backend, bf16 autocast', cpu, () => fusedEqualsPlain('cpu', 'float32', { atol: 1e-4, rtol: 1e-4 }, true));
});

describe('withWeightCache', () => {
  test('under autocast each weight is rounded once per scope, and the second batch equals the first', cpu, () => {
    const m = model('cpu', 'float32');
    k.autocast('bfloat16', () => withWeightCache(() => {
      const first = counting('cpu', () => hidden(m, 'cpu'));
      const second = counting('cpu', () => hidden(m, 'cpu'));
      // cached: per layer the QKV, out, intermediate and output weights, and the pooler's
      assert.equal(first.halfCasts - second.halfCasts, 4 * LAYERS + 1);
      assert.deepEqual(Array.from(second.value.toFloat32Array()), Array.from(first.value.toFloat32Array()));
      first.value.dispose();
      second.value.dispose();
    }));
    m.dispose();
  });

  test('frees its tensors when the scope ends; a later scope sees an in-place weight update', cpu, () => {
    const m = model('cpu', 'float32');
    const base = k.memory.stats().current.total;
    const h = k.autocast('bfloat16', () => withWeightCache(() => hidden(m, 'cpu')));
    const before = h.toFloat32Array();
    h.dispose();
    assert.equal(k.memory.stats().current.total, base, 'live bytes back to the baseline');
    const q = m.encoder.layer[0].attention.self.query.weight;
    k.noGrad(() => k.tidy(() => copy_(q, k.mul(q, 3))));
    const cached = k.autocast('bfloat16', () => withWeightCache(() => hidden(m, 'cpu')));
    const plain = k.autocast('bfloat16', () => hidden(m, 'cpu'));
    assertClose(cached, plain, { atol: 1e-4, rtol: 1e-4, what: 'after the update' });
    const moved = Math.max(...Array.from(cached.toFloat32Array(), (v, i) => Math.abs(v - before[i])));
    assert.ok(moved > 0.01, `the update moved the output by ${moved}`);
    const again = k.autocast('bfloat16', () => withWeightCache(() => hidden(m, 'cpu')));
    assert.deepEqual(Array.from(again.toFloat32Array()), Array.from(cached.toFloat32Array()));
    for (const t of [cached, plain, again]) t.dispose();
    m.dispose();
  });

  test('a weight that needs its gradient is made again on every call; nested scopes share one cache', () => {
    const w = k.randn([3, 4], { backend: 'ref', dtype: 'float64' });
    let made = 0;
    const make = (): k.Tensor => (made++, k.mul(w, 2));
    withWeightCache(() => {
      const a = cachedWeight(w, 'x2', make);
      withWeightCache(() => assert.equal(cachedWeight(w, 'x2', make), a));
      assert.equal(made, 1);
      w.requiresGrad = true;
      k.tidy(() => (cachedWeight(w, 'x2', make), cachedWeight(w, 'x2', make)));
      assert.equal(made, 3);
      w.requiresGrad = false;
    });
    // outside a scope nothing is cached
    k.tidy(() => (cachedWeight(w, 'x2', make), cachedWeight(w, 'x2', make)));
    assert.equal(made, 5);
    w.dispose();
  });
});
