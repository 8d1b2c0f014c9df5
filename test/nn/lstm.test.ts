// LSTM (torch.nn.LSTM: gates i, f, g, o; c' = s(f) c + s(i) tanh(g), h' = s(o) tanh(c')) against
// the same recurrence written as scalar float64 loops over 2 stacked layers on odd sizes, and its
// gradients (input and every weight) by central differences in float64.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { LSTM } from '../../src/nn/lstm.js';
import { assertClose, gradcheck, refLeaf, seeded } from '../helpers.js';

const sig = (v: number): number => 1 / (1 + Math.exp(-v));

/** One layer, x [T][B][D] -> h [T][B][H], from flat torch-layout weights. */
function lstmLoops(x: number[][][], wih: Float64Array, whh: Float64Array, bih: Float64Array, bhh: Float64Array, H: number): number[][][] {
  const D = x[0][0].length;
  const B = x[0].length;
  const h = Array.from({ length: B }, () => new Array<number>(H).fill(0));
  const c = Array.from({ length: B }, () => new Array<number>(H).fill(0));
  return x.map((xt) => {
    for (let b = 0; b < B; b++) {
      const g = Array.from({ length: 4 * H }, (_, r) => {
        let s = bih[r] + bhh[r];
        for (let d = 0; d < D; d++) s += wih[r * D + d] * xt[b][d];
        for (let j = 0; j < H; j++) s += whh[r * H + j] * h[b][j];
        return s;
      });
      for (let j = 0; j < H; j++) {
        c[b][j] = sig(g[H + j]) * c[b][j] + sig(g[j]) * Math.tanh(g[2 * H + j]);
        h[b][j] = sig(g[3 * H + j]) * Math.tanh(c[b][j]);
      }
    }
    return h.map((row) => row.slice());
  });
}

function seededLstm(D: number, H: number, layers: number): LSTM {
  const m = new LSTM(D, H, layers, { backend: 'ref', dtype: 'float64' });
  m.namedParameters().forEach(([name, p], i) => m.loadStateDict({ ...m.stateDict(), [name]: k.tensor(seeded(p.numel, 10 + i), { shape: [...p.shape], dtype: 'float64', backend: 'ref' }) }));
  return m;
}

test('LSTM equals the torch recurrence (float64 loops) over 2 layers on odd sizes', () => {
  for (const [T, B, D, H] of [[1, 1, 1, 1], [7, 2, 3, 5], [5, 1, 4, 3]]) {
    const m = seededLstm(D, H, 2);
    const x = refLeaf([T, B, D], 3);
    const flat = x.toTypedArray() as Float64Array;
    let seq = Array.from({ length: T }, (_, t) => Array.from({ length: B }, (_, b) => Array.from(flat.subarray((t * B + b) * D, (t * B + b + 1) * D))));
    for (let l = 0; l < 2; l++) {
      const w = (n: string): Float64Array => (m[`${n}_l${l}`] as k.Tensor).toTypedArray() as Float64Array;
      seq = lstmLoops(seq, w('weight_ih'), w('weight_hh'), w('bias_ih'), w('bias_hh'), H);
    }
    const y = m.forward(x);
    assert.deepEqual([...y.shape], [T, B, H]);
    assertClose(y, seq.flat(2), { atol: 1e-12, rtol: 1e-10, what: `LSTM ${[T, B, D, H]}` });
  }
});

test('LSTM gradients (input and weights) match central differences in float64', () => {
  const m = seededLstm(2, 3, 2);
  const names = ['weight_ih_l0', 'weight_hh_l0', 'bias_ih_l1', 'weight_hh_l1'];
  const params = names.map((n) => m[n] as k.Tensor);
  gradcheck((x, ...ws) => {
    names.forEach((n, i) => (m[n] = ws[i]));
    return m.forward(x);
  }, [refLeaf([4, 2, 2], 7), ...params], { what: 'LSTM' });
});

test('LSTM names a wrong input shape', () => {
  assert.throws(() => new LSTM(4, 3).forward(k.zeros([2, 5])), /LSTM: input \[2, 5\] must be \[T, B, 4\] \(sequence first\)/);
});
