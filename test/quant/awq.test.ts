// AWQ's scale search (src/quant/awq.ts) on a synthetic layer whose inputs have a few channels 30x
// larger than the rest (the activation outliers AWQ targets): the searched scales beat plain
// round-to-nearest on the layer's output error (α = 0 is in the grid, so they can never lose on
// the calibration set), the returned error is what the built QuantLinear really gives (recomputed
// here in float64 from its forward), and α = 0 reproduces round-to-nearest bit for bit.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';
import { awqScales, awqSearch } from '../../src/quant/awq.js';
import { seeded } from '../helpers.js';

const [N, K, rows] = [48, 64, 96];

function layer(): { w: Float32Array; x: k.Tensor; meanAbs: Float32Array } {
  const w = Float32Array.from(seeded(N * K, 3, -0.1, 0.1));
  const xv = Float32Array.from(seeded(rows * K, 4, -1, 1));
  for (let r = 0; r < rows; r++) for (const c of [3, 17, 40]) xv[r * K + c] *= 30; // outlier channels
  const meanAbs = new Float32Array(K);
  for (let i = 0; i < xv.length; i++) meanAbs[i % K] += Math.abs(xv[i]) / rows;
  return { w, x: k.tensor(xv, { shape: [rows, K], backend: 'ref' }), meanAbs };
}

/** Mean squared error of q.forward(x) against x Wᵀ, in float64. */
function outputError(q: k.quant.QuantLinear, x: k.Tensor, w: Float32Array): number {
  const y = q.forward(x.to('cpu')).to('ref').toFloat32Array();
  const xv = x.toFloat32Array();
  let s = 0;
  for (let r = 0; r < rows; r++)
    for (let n = 0; n < N; n++) {
      let want = 0;
      for (let c = 0; c < K; c++) want += xv[r * K + c] * w[n * K + c];
      s += (y[r * N + n] - want) ** 2;
    }
  return s / (rows * N);
}

describe('AWQ scale search', () => {
  for (const type of ['q4', 'int8'] as const)
    test(`${type}: beats round-to-nearest on outlier channels; the reported error is the layer's`, () => {
      const { w, x, meanAbs } = layer();
      const r = awqSearch(w, [N, K], x, meanAbs, { type });
      assert.ok(r.alpha > 0, `α ${r.alpha}: the outliers call for scaling`);
      assert.ok(r.error < 0.9 * r.rtnError, `AWQ error ${r.error} vs round-to-nearest ${r.rtnError}`);
      const q = new k.quant.QuantLinear(r.state, { backend: 'cpu' });
      const err = outputError(q, x, w);
      assert.ok(Math.abs(err - r.error) <= 1e-3 * r.error, `QuantLinear's error ${err} vs reported ${r.error}`);
      // α = 0 only: exactly round to nearest (the same bytes as QuantLinear.fromWeight)
      const rtn = awqSearch(w, [N, K], x, meanAbs, { type, grid: 1 });
      const plain = k.quant.QuantLinear.fromWeight(k.tensor(w, { shape: [N, K], backend: 'cpu' }), null, { type });
      assert.deepEqual(rtn.state.data, plain.qweight.toTypedArray());
      assert.equal(rtn.state.inputScale, undefined);
      assert.equal(rtn.error, r.rtnError);
      for (const t of [q, plain, x]) t.dispose();
    });

  test("the scales are mean|x|^α normalized to straddle 1 (geometric mean of max and min = 1)", () => {
    const s = awqScales(Float32Array.from([1, 4, 16]), 0.5);
    assert.deepEqual(Array.from(s), [0.5, 1, 2]);
  });
});
