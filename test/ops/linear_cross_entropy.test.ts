// linearCrossEntropy (src/ops/fused/linear_cross_entropy.ts) against the unfused linear +
// crossEntropy it equals: in float64 on the reference backend (the same maths, so 1e-12), and
// in float32 on the cpu backend within 1e-5 on odd shapes, with chunk boundaries inside and at
// the end of N, ignored rows, label smoothing, soft-capping and both reductions; frozen weights
// get no dW; retained graphs rescale correctly; memory stats show that neither the [N, V] logits
// nor their gradient is ever held. gradcheck (float64 finite differences) runs from cases.ts.
import { skipUnless } from '../devices.js';
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';
import { assertClose, hasCpu, seededTensor } from '../helpers.js';
import { CHUNK_BYTES, defaultChunkRows } from '../../src/ops/fused/linear_cross_entropy.js';

type Opts = k.LinearCrossEntropyOptions;

/** Targets in [0, V) with every 4th row ignored (-100). */
const targets = (N: number, V: number, backend: k.BackendName): k.Tensor =>
  k.tensor(Array.from({ length: N }, (_, i) => (i % 4 === 2 ? -100 : (i * 7 + 3) % V)), { dtype: 'int64', backend });

/** loss, dhidden and dweight of f for the upstream gradient 0.7 (so the scaling path is exercised). */
function lossAndGrads(f: typeof k.linearCrossEntropy, h: k.Tensor, w: k.Tensor, t: k.Tensor, o: Opts): k.Tensor[] {
  const [hl, wl] = [h.detach().requiresGrad_(), w.detach().requiresGrad_()];
  return k.tidy(() => {
    const loss = f(hl, wl, t, o);
    loss.backward(k.full([], 0.7, { dtype: loss.dtype, backend: loss.backendName }));
    return [loss, hl.grad!, wl.grad!];
  });
}

function compare(what: string, backend: 'cpu' | 'ref', N: number, D: number, V: number, o: Opts, tol: { atol: number; rtol: number }): void {
  k.tidy(() => {
    const dtype = backend === 'ref' ? 'float64' : 'float32';
    const h = seededTensor([N, D], dtype, backend, N + D, -2, 2);
    const w = seededTensor([V, D], dtype, backend, V, -1, 1);
    const t = targets(N, V, backend);
    const got = lossAndGrads(k.linearCrossEntropy, h, w, t, o);
    const want = lossAndGrads(k.linearCrossEntropyComposite, h, w, t, o);
    ['loss', 'dhidden', 'dweight'].forEach((part, i) => assertClose(got[i], want[i], { ...tol, what: `${what} ${part}` }));
  });
}

const VARIANTS: [string, Opts][] = [
  ['mean', {}],
  ['sum', { reduction: 'sum' }],
  ['smoothing 0.1', { labelSmoothing: 0.1 }],
  ['softcap 3', { softcap: 3, reduction: 'sum' }],
];

describe('linearCrossEntropy = linear + crossEntropy', () => {
  test('float64 reference backend, chunks of 2 and 3 over 7 rows', () => {
    for (const [name, o] of VARIANTS)
      for (const chunkSize of [2, 3, undefined])
        compare(`ref ${name} chunk ${chunkSize}`, 'ref', 7, 5, 11, { ...o, chunkSize }, { atol: 1e-12, rtol: 1e-10 });
  });

  test('float32 cpu backend, odd shapes and chunk boundaries', { skip: !hasCpu() && 'cpu backend not built' }, () => {
    for (const [N, D, V] of [[1, 7, 33], [7, 33, 257], [33, 7, 257], [40, 33, 1000]])
      for (const [name, o] of VARIANTS)
        for (const chunkSize of [1, 8, undefined])
          compare(`cpu [${N},${D}]x[${V},${D}] ${name} chunk ${chunkSize}`, 'cpu', N, D, V, { ...o, chunkSize }, { atol: 1e-5, rtol: 1e-5 });
  });

  test('leading dims are flattened; int32 targets are accepted', () => {
    k.tidy(() => {
      const h = seededTensor([2, 3, 4], 'float64', 'ref', 1);
      const w = seededTensor([6, 4], 'float64', 'ref', 2);
      const t = k.tensor([[1, 5, -100], [0, 2, 3]], { dtype: 'int32', backend: 'ref' });
      assertClose(k.linearCrossEntropy(h, w, t), k.linearCrossEntropyComposite(h, w, t), { atol: 1e-12, rtol: 1e-12, what: 'loss' });
    });
  });

  test('every target ignored: mean is NaN (0/0, as in PyTorch), gradients are 0', () => {
    k.tidy(() => {
      const h = seededTensor([3, 4], 'float64', 'ref', 1).requiresGrad_();
      const w = seededTensor([5, 4], 'float64', 'ref', 2);
      const loss = k.linearCrossEntropy(h, w, k.tensor([-100, -100, -100], { dtype: 'int64', backend: 'ref' }));
      assert.ok(Number.isNaN(loss.item()));
      loss.backward();
      assert.deepEqual([...h.grad!.toFloat32Array()], new Array(12).fill(0));
    });
  });
});

describe('linearCrossEntropy autograd', () => {
  test('a frozen weight gets no gradient and costs no [V, D] buffer', { skip: !hasCpu() && 'cpu backend not built' }, () => {
    k.tidy(() => {
      const [N, D, V] = [16, 8, 4096];
      const h = seededTensor([N, D], 'float32', 'cpu', 1).requiresGrad_();
      const w = seededTensor([V, D], 'float32', 'cpu', 2);
      const t = targets(N, V, 'cpu');
      const base = k.memory.stats().current.total;
      k.memory.resetPeak();
      const loss = k.linearCrossEntropy(h, w, t, { chunkSize: 4 });
      const peak = k.memory.stats().peak.total - base;
      // logits and dlogits chunks (2 x 4 x V floats) and dh (N x D) at most; a dW would add V*D*4
      assert.ok(peak <= 2 * 4 * V * 4 + N * D * 4 + 4096, `peak ${peak} bytes`);
      loss.backward();
      assert.equal(w.grad, null);
      const hr = h.detach().requiresGrad_();
      k.linearCrossEntropyComposite(hr, w, t).backward();
      assertClose(h.grad!, hr.grad!, { atol: 1e-6, rtol: 1e-5, what: 'dhidden with frozen weight' });
    });
  });

  test('retainGraph: a second backward adds the same gradient again', () => {
    k.tidy(() => {
      const h = seededTensor([5, 3], 'float64', 'ref', 1).requiresGrad_();
      const w = seededTensor([7, 3], 'float64', 'ref', 2).requiresGrad_();
      const t = targets(5, 7, 'ref');
      const loss = k.linearCrossEntropy(h, w, t, { chunkSize: 2 });
      loss.mul(3).backward(undefined, { retainGraph: true });
      loss.mul(0.5).backward();
      const [hr, wr] = [h.detach().requiresGrad_(), w.detach().requiresGrad_()];
      k.linearCrossEntropyComposite(hr, wr, t).mul(3.5).backward();
      assertClose(h.grad!, hr.grad!, { atol: 1e-12, rtol: 1e-10, what: 'dh after two backwards' });
      assertClose(w.grad!, wr.grad!, { atol: 1e-12, rtol: 1e-10, what: 'dW after two backwards' });
    });
  });

  test('peak memory stays far below N x V x 4 bytes (N=64, V=4096)', { skip: !hasCpu() && 'cpu backend not built' }, () => {
    k.tidy(() => {
      const [N, D, V] = [64, 8, 4096];
      const h = seededTensor([N, D], 'float32', 'cpu', 1).requiresGrad_();
      const w = seededTensor([V, D], 'float32', 'cpu', 2).requiresGrad_();
      const t = targets(N, V, 'cpu');
      const peakOf = (f: () => void): number => {
        const base = k.memory.stats().current.total;
        k.memory.resetPeak();
        k.tidy(f);
        h.zeroGrad();
        w.zeroGrad();
        return k.memory.stats().peak.total - base;
      };
      const fused = peakOf(() => k.linearCrossEntropy(h, w, t, { chunkSize: 8 }).backward());
      const unfused = peakOf(() => k.crossEntropy(k.linear(h, w), t).backward());
      const logits = N * V * 4;
      // fused: dW (V*D*4, needed by any method) plus two 8-row chunks; unfused holds logits and dlogits
      assert.ok(fused < V * D * 4 + logits / 2, `fused peak ${fused} bytes, logits ${logits}`);
      assert.ok(unfused >= 2 * logits, `unfused peak ${unfused} bytes`);
    });
  });

  test('default chunks: equal pieces of about CHUNK_BYTES of logits, at least 8 rows (or all N)', () => {
    for (const [N, V] of [[256, 49152], [4096, 151936], [64, 4096], [1000, 32000], [3, 7]]) {
      const rows = defaultChunkRows(N, V);
      const chunks = Math.ceil(N / rows);
      assert.ok(rows >= Math.min(8, N) && rows <= N, `N=${N} V=${V}: ${rows} rows`);
      // within one row of the budget, and no chunk much smaller than the others
      assert.ok(rows <= 8 || (rows - 1) * V * 4 <= CHUNK_BYTES, `N=${N} V=${V}: ${rows} rows x ${V} floats`);
      assert.ok(N - (chunks - 1) * rows >= rows - chunks, `N=${N} V=${V}: last chunk ${N - (chunks - 1) * rows} of ${rows}`);
    }
  });

  test('bad input names the op and the shapes', () => {
    k.tidy(() => {
      const h = k.zeros([3, 4], { backend: 'ref' });
      const w = k.zeros([5, 4], { backend: 'ref' });
      const t = k.tensor([0, 1, 2], { dtype: 'int64', backend: 'ref' });
      assert.throws(() => k.linearCrossEntropy(h, k.zeros([5, 3], { backend: 'ref' }), t), /linearCrossEntropy: weight \[5, 3\] must be \[V, 4\]/);
      assert.throws(() => k.linearCrossEntropy(h, w, k.tensor([0, 1], { dtype: 'int64', backend: 'ref' })), /linearCrossEntropy: hidden \[3, 4\] and target \[2\]/);
      assert.throws(() => k.linearCrossEntropy(h, w, t, { reduction: 'none' as 'sum' }), /reduction must be 'mean' or 'sum'/);
      assert.throws(() => k.linearCrossEntropy(h, w, t, { chunkSize: 0 }), /chunkSize must be a positive integer/);
      assert.throws(() => k.linearCrossEntropy(h, w, k.tensor([0, 9, 1], { dtype: 'int64', backend: 'ref' })), /target 9 out of range/);
    });
  });
});


// On a backend whose GEMM takes half operands (Backend.halfMatmul: cuda, cpu) under bf16/fp16 autocast, or with half inputs, the head's products
// take half operands with float32 results: the loss equals the float64 composite of the
// half-rounded h and W (within float32 accumulation, 1e-5), and the gradients equal it within
// the one rounding of dz to half before its two products (2e-2 for bf16's 8 bits, 4e-3 for fp16).
for (const device of ['cpu', 'cuda'] as const)
for (const dtype of ['bfloat16', 'float16'] as const)
  test(`${device}: the head in ${dtype} (autocast, and half inputs) equals the composite of the rounded operands`, { skip: skipUnless(device) }, () => {
    const [N, D, V] = [37, 24, 53];
    const tol = dtype === 'bfloat16' ? 2e-2 : 4e-3;
    const rounded = (t: k.Tensor): k.Tensor => t.to(dtype).to('float64');
    const h = seededTensor([N, D], 'float32', device, 5, -2, 2);
    const w = seededTensor([V, D], 'float32', device, 6, -1, 1);
    const want = lossAndGrads(k.linearCrossEntropyComposite, rounded(h.to('ref')), rounded(w.to('ref')), targets(N, V, 'ref'), { chunkSize: 16 });
    const t = k.tidy(() => targets(N, V, 'ref').to(device));
    const auto = k.autocast(dtype, () => lossAndGrads(k.linearCrossEntropy, h, w, t, { chunkSize: 16 }));
    const half = lossAndGrads(k.linearCrossEntropy, h.to(dtype), w.to(dtype), t, { chunkSize: 16 });
    assert.deepEqual([auto[1].dtype, half[1].dtype, half[2].dtype], ['float32', dtype, dtype], 'gradients come back in the inputs\' dtypes');
    assertClose(auto[0], want[0], { atol: 1e-5, rtol: 1e-5, what: 'autocast loss' });
    for (const [i, part] of [[1, 'dhidden'], [2, 'dweight']] as const) {
      assertClose(auto[i], want[i], { atol: tol * 0.1, rtol: tol, what: `autocast ${part}` });
      assertClose(half[i], want[i], { atol: tol * 0.1, rtol: tol, what: `${dtype} inputs ${part}` });
    }
  });

// The CPU's GEMM rounds a float32 operand to half as it packs it (Backend.halfMatmulFloatB): under
// autocast the head multiplies by the float32 W itself, so the pass holds no [V, D] half copy of W,
// and its results equal those of a W that is already bf16-exact (nothing left to round) bit for bit.
test('cpu: under bf16 autocast a float32 W is rounded inside the GEMM: no half copy of W, the same bits', { skip: skipUnless('cpu') }, () => {
  const [N, D, V, chunk] = [37, 64, 4099, 16];
  const h = seededTensor([N, D], 'float32', 'cpu', 5, -2, 2);
  const w = seededTensor([V, D], 'float32', 'cpu', 6, -1, 1);
  const exact = w.to('bfloat16').to('float32'); // W's bf16 values held in float32
  const t = k.tidy(() => targets(N, V, 'ref').to('cpu'));
  k.memory.resetPeak();
  const before = k.memory.stats().current.total;
  const [loss, dh, dw] = k.autocast('bfloat16', () => lossAndGrads(k.linearCrossEntropy, h, w, t, { chunkSize: chunk }));
  const peak = k.memory.stats().peak.total - before;
  // what the pass must hold: dW and dh (float32), the logits chunk (float32) and its bf16 gradient, h in bf16, small vectors
  const needed = V * D * 4 + N * D * 4 + chunk * V * 4 + chunk * V * 2 + N * D * 2;
  assert.ok(peak < needed + (V * D * 2) / 2, `peak +${peak} B; a bf16 copy of W would add ${V * D * 2} B to the ${needed} B needed`);
  const [loss2, dh2, dw2] = k.autocast('bfloat16', () => lossAndGrads(k.linearCrossEntropy, h, exact, t, { chunkSize: chunk }));
  const bits = (x: k.Tensor): number[] => Array.from(new Uint32Array(x.toFloat32Array().buffer));
  assert.deepEqual(bits(loss), bits(loss2), 'loss');
  assert.deepEqual(bits(dh), bits(dh2), 'dhidden');
  assert.deepEqual(bits(dw), bits(dw2), 'dweight');
  for (const x of [h, w, exact, t, loss, dh, dw, loss2, dh2, dw2]) x.dispose();
});
