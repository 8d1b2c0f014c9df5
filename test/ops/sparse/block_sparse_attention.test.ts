// blockSparseAttention on the reference backend (float64) against its definition: dense attention
// (attentionComposite) with the layout's element mask. Outputs and the gradients of sum(out * w) for
// every layout mode, odd lengths, GQA, per-head layouts, decode (Tq < Tk), non-contiguous inputs;
// finite differences on the reference kernel; rows that see no key; bad input.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as k from '../../../src/index.js';
import { assertClose, gradcheck, refLeaf } from '../../helpers.js';
import { MODE_CONFIGS, type SparseCase, layoutOf, leaves, outAndGrads } from './cases.js';

function compareWithDense(c: SparseCase): void {
  const layout = layoutOf(c);
  const [q, kk, v] = leaves(c, 'ref', 'float64');
  const causal = c.causal ?? false;
  const sparse = outAndGrads((a, b, d) => k.blockSparseAttention(a, b, d, layout, { causal }), q, kk, v);
  const dense = outAndGrads((a, b, d) => k.attentionComposite(a, b, d, { mask: k.blockSparseMask(layout, a.shape[2], b.shape[2], causal, a) }), q, kk, v);
  ['out', 'dq', 'dk', 'dv'].forEach((what, i) => assertClose(sparse[i], dense[i], { atol: 1e-12, rtol: 1e-10, what: `${c.name}: ${what}` }));
  for (const t of [q, kk, v]) t.dispose();
}

for (const [mode, cfg] of Object.entries(MODE_CONFIGS))
  for (const T of [1, 7, 33])
    for (const causal of [false, true]) {
      const c = { name: `${mode} T=${T}${causal ? ' causal' : ''}`, cfg, T, causal };
      test(`block-sparse equals masked dense attention (ref): ${c.name}`, () => compareWithDense(c));
    }

test('block-sparse equals masked dense attention (ref): GQA, batch 2, decode and chunked prefill', () => {
  const cfg = { ...MODE_CONFIGS.bigbird, attention: 'unidirectional', different_layout_per_head: true };
  compareWithDense({ name: 'GQA H=4 Hkv=2 B=2', cfg, T: 13, B: 2, H: 4, Hkv: 2, causal: true });
  compareWithDense({ name: 'MQA H=3 Hkv=1', cfg, T: 9, H: 3, Hkv: 1, causal: true });
  compareWithDense({ name: 'decode Tq=1', cfg, T: 11, Tq: 1, H: 4, Hkv: 2, causal: true });
  compareWithDense({ name: 'chunked prefill Tq=5 of 18', cfg: MODE_CONFIGS.fixed, T: 18, Tq: 5, causal: true });
});

test('non-contiguous q, k, v (transposed views) give the contiguous result', () => {
  const layout = k.makeLayout(k.parseSparsityConfig(MODE_CONFIGS.bslongformer), 2, 9);
  const [q, kk, v] = [[1, 9, 2, 4], [1, 9, 2, 4], [1, 9, 2, 4]].map((s, i) => refLeaf(s, i + 1));
  const viewed = outAndGrads((a, b, d) => k.blockSparseAttention(a.transpose(1, 2), b.transpose(1, 2), d.transpose(1, 2), layout), q, kk, v);
  const [qc, kc, vc] = [q, kk, v].map((t) => k.noGrad(() => t.transpose(1, 2).contiguous()).requiresGrad_(true));
  const plain = outAndGrads((a, b, d) => k.blockSparseAttention(a, b, d, layout), qc, kc, vc);
  assertClose(viewed[0], plain[0], { atol: 1e-14, what: 'out' });
  // the gradients of the views are the transposes of the contiguous ones
  for (let i = 1; i < 4; i++) {
    const t = k.tensor(plain[i], { shape: [1, 2, 9, 4], dtype: 'float64', backend: 'ref' }).transpose(1, 2).contiguous();
    assertClose(viewed[i], t, { atol: 1e-14, what: `grad ${i}` });
  }
});

test('gradcheck (finite differences, float64) of the reference block-sparse kernel', () => {
  const layout = k.makeLayout(k.parseSparsityConfig({ ...MODE_CONFIGS.variable, attention: 'unidirectional' }), 2, 7);
  const [q, kk, v] = leaves({ name: 'gc', cfg: {}, T: 7, H: 2, Hkv: 1, hd: 3 }, 'ref', 'float64');
  gradcheck((a, b, d) => k.blockSparseAttention(a, b, d, layout, { causal: true, scale: 0.8 }), [q, kk, v], { what: 'blockSparseAttention' });
});

test('a query row whose blocks are all empty gives 0 and no gradient', () => {
  const layout = k.BlockLayout.zeros(2, 1, 2);
  layout.set(0, 1, 1); // only the second query block sees (its own) keys
  const [q, kk, v] = leaves({ name: 'empty', cfg: {}, T: 4, H: 1 }, 'ref', 'float64');
  const [out, dq] = outAndGrads((a, b, d) => k.blockSparseAttention(a, b, d, layout), q, kk, v);
  assert.deepEqual([...out.subarray(0, 8)], new Array(8).fill(0), 'rows 0, 1 are 0');
  assert.deepEqual([...dq.subarray(0, 8)], new Array(8).fill(0), 'rows 0, 1 get no gradient');
  assert.ok(out.subarray(8).some((x) => x !== 0));
});

test('bad input names the op and the shapes', () => {
  const layout = k.makeLayout(k.parseSparsityConfig({ mode: 'dense', block: 4 }), 3, 8);
  const [q, kk, v] = leaves({ name: 'bad', cfg: {}, T: 8, H: 2 }, 'ref', 'float64');
  assert.throws(() => k.blockSparseAttention(q, kk, v, layout), /blockSparseAttention: the layout has 3 heads, q has 2/);
  const short = k.makeLayout(k.parseSparsityConfig({ mode: 'dense', block: 4 }), 1, 4);
  assert.throws(() => k.blockSparseAttention(q, kk, v, short), /8 keys need 2 blocks/);
  assert.throws(() => k.blockSparseAttention(kk, q.narrow(2, 0, 3), v, short), /k and v must agree/);
});
