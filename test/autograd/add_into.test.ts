// GradFn.addInto: an embedding whose weight is tied to the LM head (k.linearCrossEntropy, whose [V, D]
// gradient is summed first) adds its rows into that gradient in place instead of building a [V, D] of
// zeros beside it. Checked: the gradient by central differences in float64 (duplicate ids included);
// with a padding row, the head's gradient alone there; bit for bit the sum of the two uses' separate
// gradients when ids are unique (a + g_row, as before); the backward peak holds one [V, D] gradient.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';
import { assertClose, gradcheck, refLeaf, seededTensor } from '../helpers.js';

const [V, D] = [257, 33];

/** The LM-head loss of embedding(ids, We) through Wh (summed cross-entropy on targets); tied when We = Wh. */
const loss = (ids: k.Tensor, target: k.Tensor, we: k.Tensor, wh: k.Tensor, pad: number | null = null): k.Tensor =>
  k.tidy(() => k.linearCrossEntropy(k.embedding(ids, we, pad).tanh(), wh, target, { reduction: 'sum' }));

describe('GradFn.addInto (tied embedding)', () => {
  test('the tied gradient matches central differences in float64, duplicate ids included; a padding row gets only the head\'s', () => {
    const ids = k.tensor([3, 0, 5, 3, 6, 3, 1], { dtype: 'int64', backend: 'ref' });
    const target = k.tensor([1, 2, 3, 4, 5, 6, 0], { dtype: 'int64', backend: 'ref' });
    const w = refLeaf([7, 5], 3);
    gradcheck((x) => loss(ids, target, x, x).reshape([1]), [w], { what: 'tied embedding + head' });
    // padding row 3: no gradient from the lookup (nn.Embedding's padding_idx), so no finite differences;
    // the tied gradient is the two uses' separate gradients summed
    const [we, wh] = [refLeaf([7, 5], 3), refLeaf([7, 5], 3)];
    k.tidy(() => loss(ids, target, we, wh, 3).backward());
    w.zeroGrad();
    k.tidy(() => loss(ids, target, w, w, 3).backward());
    assertClose(w.grad!, k.noGrad(() => we.grad!.add(wh.grad!)), { atol: 1e-12, rtol: 1e-12, what: 'tied with padding row 3' });
    for (const t of [ids, target, w, we, wh]) t.dispose();
  });

  const backends: k.BackendName[] = k.hasBackend('cpu') ? ['ref', 'cpu'] : ['ref'];
  for (const backend of backends) {
    test(`${backend}: unique ids give the two uses' gradients summed, bit for bit, with one [V, D] gradient at the peak`, () => {
      const dtype = 'float32';
      const N = 7;
      const ids = k.tensor([4, 200, 0, 256, 17, 33, 1], { dtype: 'int64', backend });
      const target = k.tensor([5, 9, 100, 2, 256, 0, 7], { dtype: 'int64', backend });
      const w = seededTensor([V, D], dtype, backend, 6).requiresGrad_();
      // the same maths on two untied leaves: each use's gradient alone
      const [we, wh] = [seededTensor([V, D], dtype, backend, 6).requiresGrad_(), seededTensor([V, D], dtype, backend, 6).requiresGrad_()];
      k.tidy(() => loss(ids, target, we, wh).backward());
      // the head computes its [V, D] gradient in forward: it is part of what forward leaves
      const l = loss(ids, target, w, w);
      const before = k.memory.stats().current.total;
      k.memory.resetPeak();
      l.backward();
      const peak = k.memory.stats().peak.total - before;
      const want = k.noGrad(() => we.grad!.add(wh.grad!));
      assert.deepEqual(Array.from(w.grad!.toFloat32Array()), Array.from(want.toFloat32Array()));
      // beyond what forward left (the head's dW among it), only [N, D] gradients; the embedding's own
      // [V, D] of zeros would add V*D*4 bytes
      const budget = 4 * N * D * 4;
      assert.ok(peak <= budget, `backward peak ${peak} bytes above forward's > ${budget} (the [N, D] gradients)`);
      for (const t of [ids, target, w, we, wh, want, l]) t.dispose();
    });
  }
});
