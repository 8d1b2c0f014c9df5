// Every fused op equals the composite it names (forward and gradients), on the reference
// backend in float64, plus known values computed by hand.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';
import { assertClose, refLeaf } from '../helpers.js';

k.setDefaultBackend('ref');

/** Forward values and input gradients of f and g on the same inputs must agree. */
function sameAs(f: (...x: k.Tensor[]) => k.Tensor, g: (...x: k.Tensor[]) => k.Tensor, shapes: number[][], what: string): void {
  k.tidy(() => {
    const run = (fn: typeof f) => {
      const xs = shapes.map((s, i) => refLeaf(s, 3 + i));
      const y = fn(...xs);
      y.mul(refLeaf(y.shape as number[], 77)).sum().backward();
      return { y, grads: xs.map((x) => x.grad) };
    };
    const a = run(f);
    const b = run(g);
    assertClose(a.y, b.y, { atol: 1e-12, rtol: 1e-10, what: `${what} forward` });
    a.grads.forEach((ga, i) => assertClose(ga!, b.grads[i]!, { atol: 1e-12, rtol: 1e-9, what: `${what} grad ${i}` }));
  });
}

const ids = (v: number[], shape = [v.length]): k.Tensor => k.tensor(v, { dtype: 'int64', shape });

describe('fused = composite (float64)', () => {
  test('softmax', () => sameAs((x) => k.softmax(x, 1), (x) => k.softmaxComposite(x, 1), [[2, 7, 3]], 'softmax'));
  test('logSoftmax', () => sameAs((x) => k.logSoftmax(x), (x) => k.logSoftmaxComposite(x), [[4, 33]], 'logSoftmax'));
  test('rmsNorm', () => sameAs((x, w) => k.rmsNorm(x, w, { eps: 1e-5 }), (x, w) => k.rmsNormComposite(x, w, { eps: 1e-5 }), [[3, 7], [7]], 'rmsNorm'));
  test('rmsNorm offset', () =>
    sameAs((x, w) => k.rmsNorm(x, w, { offset: 1 }), (x, w) => k.rmsNormComposite(x, w, { offset: 1 }), [[2, 2, 5], [5]], 'rmsNorm offset'));
  test('layerNorm', () => sameAs((x, w, b) => k.layerNorm(x, w, b), (x, w, b) => k.layerNormComposite(x, w, b), [[3, 9], [9], [9]], 'layerNorm'));
  for (const labelSmoothing of [0, 0.2])
    for (const reduction of ['mean', 'sum', 'none'] as const)
      test(`crossEntropy smoothing ${labelSmoothing} ${reduction}`, () => {
        const t = ids([3, -100, 0, 6, 2, 2], [2, 3]);
        const o = { labelSmoothing, reduction };
        sameAs((x) => k.crossEntropy(x, t, o), (x) => k.crossEntropyComposite(x, t, o), [[2, 3, 7]], 'crossEntropy');
      });
  for (const act of ['silu', 'gelu_tanh', 'gelu'] as const)
    test(`glu ${act}`, () => sameAs((g, u) => k.glu(g, u, act), (g, u) => k.gluComposite(g, u, act), [[3, 7], [3, 7]], `glu ${act}`));
  for (const interleaved of [false, true])
    test(`rope ${interleaved ? 'interleaved' : 'half'}`, () => {
      const { cos, sin } = k.rotaryTables(ids([0, 3, 1, 7, 2, 9], [2, 3]), 8, 500);
      const [c, s] = [cos.to('float64'), sin.to('float64')];
      sameAs((x) => k.rope(x, c, s, { interleaved }), (x) => k.ropeComposite(x, c, s, { interleaved }), [[2, 2, 3, 8]], 'rope');
    });
});

describe('known values', () => {
  test('matmul, softmax, crossEntropy by hand', () => {
    k.tidy(() => {
      assert.deepEqual(k.matmul(k.tensor([[1, 2], [3, 4]]), k.tensor([[5], [6]])).toArray(), [[17], [39]]);
      const s = k.softmax(k.tensor([0, Math.log(3)]));
      assertClose(s, [0.25, 0.75]);
      // -log(softmax([0, ln 3])[1]) = -log(0.75)
      assertClose(k.crossEntropy(k.tensor([[0, Math.log(3)]]), ids([1])), [-Math.log(0.75)]);
      // label smoothing 0.5: 0.5 * nll + 0.5 * mean(-log p) = 0.5(-ln .75) + 0.25(-ln .25 - ln .75)
      const ls = 0.5 * -Math.log(0.75) + 0.25 * (-Math.log(0.25) - Math.log(0.75));
      assertClose(k.crossEntropy(k.tensor([[0, Math.log(3)]]), ids([1]), { labelSmoothing: 0.5 }), [ls]);
      assertClose(k.rmsNorm(k.tensor([[3, 4]]), null, { eps: 0 }), [3 / Math.sqrt(12.5), 4 / Math.sqrt(12.5)]);
      assert.deepEqual(k.tensor([[1, 5, 2], [7, 0, 7]]).argmax(1).toArray(), [1, 0]);
      assertClose(k.tensor([1, 2, 3, 4]).var(), [5 / 3]);
      assert.deepEqual(k.tensor([[1, 2], [3, 4]]).tril().toArray(), [[1, 0], [3, 4]]);
      assert.deepEqual(k.cat([k.tensor([[1]]), k.tensor([[2, 3]])], 1).toArray(), [[1, 2, 3]]);
      assert.deepEqual(k.tensor([[1, 2], [3, 4]]).gather(1, ids([1, 0, 0, 0], [2, 2])).toArray(), [[2, 1], [3, 3]]);
      assert.deepEqual(k.tensor(2).mul(k.tensor([1, 2], { dtype: 'int32' })).dtype, 'float32');
      assert.deepEqual(k.tensor([7, -7], { dtype: 'int64' }).div(2).toArray(), [3.5, -3.5]);
    });
  });
});

describe('bad input names the op and the shapes', () => {
  test('shape mismatches, dtypes, indices, disposed tensors', () => {
    k.tidy(() => {
      const a = k.zeros([2, 3]);
      assert.throws(() => a.add(k.zeros([4])), /add: shapes \[2, 3\] and \[4\] cannot be broadcast/);
      assert.throws(() => k.matmul(a, k.zeros([2, 3])), /matmul: shapes \[2, 3\] and \[2, 3\] do not align/);
      assert.throws(() => k.matmul(a, k.zeros([3, 2], { dtype: 'int32' })), /matmul: operands must share a float dtype/);
      assert.throws(() => a.gather(1, ids([0, 3], [2, 1])), /gather: index 3 is out of range/);
      assert.throws(() => a.indexSelect(0, ids([2])), /indexSelect: index 2 is out of range/);
      assert.throws(() => k.embedding(ids([5]), k.zeros([4, 2])), /index 5 is out of range/);
      assert.throws(() => k.crossEntropy(k.zeros([2, 3]), ids([0, 3])), /crossEntropy: target 3 out of range for 3 classes/);
      assert.throws(() => k.crossEntropy(k.zeros([2, 3]), ids([0])), /crossEntropy: logits \[2, 3\] and target \[1\]/);
      assert.throws(() => k.rmsNorm(a, k.ones([2])), /rmsNorm: weight \[2\] does not match the last dim of input \[2, 3\]/);
      assert.throws(() => k.scaledDotProductAttention(k.zeros([1, 3, 2, 4]), k.zeros([1, 2, 2, 4]), k.zeros([1, 2, 2, 4])), /3 query heads are not a multiple of 2 kv heads/);
      assert.throws(() => k.tensor([[1, 2], [3]]), /ragged/);
      assert.throws(() => k.zeros([2]).item(), /item: tensor of shape \[2\] has 2 elements/);
      const d = k.zeros([2]);
      d.dispose();
      assert.throws(() => d.add(1), /add: tensor of shape \[2\] was disposed/);
    });
  });
});
