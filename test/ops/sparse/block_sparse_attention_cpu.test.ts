// The native block-sparse attention kernel (native/block_sparse_attention.cc, float32) against the
// float64 reference kernel: outputs and gradients for every layout mode on odd lengths (1, 7, 33,
// 257: partial last blocks, spans merged past 256 keys), causal or not, GQA, decode, 1 and 2
// threads; the AVX2 and scalar bodies in child processes (KESTREL_SIMD); corrupt layouts rejected.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import * as k from '../../../src/index.js';
import { loadNative } from '../../../src/backend/addon.js';
import { assertClose, hasCpu, onCpuThreads, runChild } from '../../helpers.js';
import { MODE_CONFIGS, type SparseCase, layoutOf, leaves, outAndGrads } from './cases.js';

const CHILD = process.env.KESTREL_SPARSE_CHILD === '1';
const skip = hasCpu() ? false : 'native addon not built';

function compareWithRef(c: SparseCase): void {
  const layout = layoutOf(c);
  const causal = c.causal ?? false;
  const f = (a: k.Tensor, b: k.Tensor, d: k.Tensor): k.Tensor => k.blockSparseAttention(a, b, d, layout, { causal });
  const ref = leaves(c, 'ref', 'float64');
  const cpu = leaves(c, 'cpu', 'float32');
  const want = outAndGrads(f, ref[0], ref[1], ref[2]);
  const got = outAndGrads(f, cpu[0], cpu[1], cpu[2]);
  ['out', 'dq', 'dk', 'dv'].forEach((what, i) => assertClose(got[i], want[i], { atol: 2e-5, rtol: 2e-4, what: `${c.name}: ${what}` }));
  for (const t of [...ref, ...cpu]) t.dispose();
}

/** The cases the SIMD children re-run: one per mode at an odd length, GQA, decode. */
function core(): SparseCase[] {
  const cases: SparseCase[] = Object.entries(MODE_CONFIGS).map(([mode, cfg], i) =>
    ({ name: `${mode} T=33`, cfg, T: 33, hd: 5, causal: i % 2 === 0 }));
  const uni = { ...MODE_CONFIGS.bslongformer, attention: 'unidirectional' };
  cases.push({ name: 'GQA H=4 Hkv=2 B=2', cfg: uni, T: 21, B: 2, H: 4, Hkv: 2, hd: 8, causal: true });
  cases.push({ name: 'decode Tq=1 of 30', cfg: uni, T: 30, Tq: 1, H: 4, Hkv: 2, causal: true });
  cases.push({ name: 'chunked prefill Tq=9 of 30', cfg: MODE_CONFIGS.fixed, T: 30, Tq: 9, causal: true });
  return cases;
}

if (CHILD) {
  onCpuThreads(() => core().forEach(compareWithRef));
} else {
  test('native block-sparse attention equals the reference: every mode, GQA, decode, 1 and 2 threads', { skip }, () => {
    const addon = loadNative()!;
    const threads = addon.info().threads as number;
    try {
      for (const n of [1, 2]) {
        addon.setThreads(n);
        core().forEach((c) => compareWithRef({ ...c, name: `${c.name} (${n} threads)` }));
      }
    } finally {
      addon.setThreads(threads);
    }
  });

  test('native block-sparse attention equals the reference: odd lengths 1, 7, 257 and wide spans', { skip }, () => {
    for (const T of [1, 7]) for (const [mode, cfg] of Object.entries(MODE_CONFIGS)) compareWithRef({ name: `${mode} T=${T}`, cfg, T, causal: T === 7 });
    // 257 tokens in blocks of 16: 17 blocks, the last one token; dense rows merge into a 256-key span plus one
    compareWithRef({ name: 'dense block 16 T=257', cfg: { mode: 'dense', block: 16 }, T: 257, H: 1, hd: 8 });
    compareWithRef({ name: 'bigbird block 16 T=257 causal', cfg: { mode: 'bigbird', block: 16, num_random_blocks: 2, attention: 'unidirectional', seed: 2 }, T: 257, H: 2, Hkv: 1, hd: 8, causal: true });
  });

  for (const simd of ['avx2', 'scalar'])
    test(`the ${simd} body agrees too (child process)`, { skip }, () => {
      const out = runChild(fileURLToPath(import.meta.url), { KESTREL_SIMD: simd, KESTREL_SPARSE_CHILD: '1' });
      assert.match(out, /^ok /m);
    });

  test('the kernel rejects a corrupt layout instead of reading out of bounds', { skip }, () => {
    const [q, kk, v] = leaves({ name: 'bad', cfg: {}, T: 8, H: 1 }, 'cpu', 'float32');
    const kern = k.getBackend('cpu').sparseAttention!;
    const i32 = (xs: number[]): k.Tensor => k.tensor(Int32Array.from(xs), { dtype: 'int32', backend: 'cpu' });
    const out = k.empty([1, 1, 8, 4], 'float32', { backend: 'cpu' });
    const lse = k.empty([1, 1, 8], 'float32', { backend: 'cpu' });
    const o = { scale: 0.5, causal: false, block: 4, nBlocks: 2, layoutHeads: 1 };
    assert.throws(() => kern.blockSparseAttention(q, kk, v, i32([0, 1, 2]), i32([0, 2]), o, out, lse), /rows row 1: block 2 is out of \[0, 2\)/);
    assert.throws(() => kern.blockSparseAttention(q, kk, v, i32([0, 2, 2]), i32([1, 0]), o, out, lse), /not ascending/);
    assert.throws(() => kern.blockSparseAttention(q, kk, v, i32([0, 1, 3]), i32([0, 1]), o, out, lse), /from 0 to the index count/);
    assert.throws(() => kern.blockSparseAttention(q, kk, v, i32([0, 1, 2]), i32([0, 1]), { ...o, nBlocks: 3 }, out, lse), /nBlocks 3 must be ceil/);
  });
}
