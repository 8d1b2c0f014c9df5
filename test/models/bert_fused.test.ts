// BERT's fused layer paths (linear + bias + GELU, residual add + LayerNorm) must give the outputs
// and parameter gradients of the unfused path. The reference is the same model with its
// intermediate dense re-classed as a Linear subclass, which the GELU fusion does not take (as it does
// not take LoRA or quantized layers); add + LayerNorm is fused in both (test/ops/encoder_fused.test.ts
// checks it against its composite). In float64 on the reference backend they agree to rounding, on
// the CPU backend in float32 to float32 rounding, under bf16 autocast to bf16 rounding.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';
import type { BertModel } from '../../src/models/bert.js';
import { buildModel } from '../../src/models/registry.js';
import { Linear } from '../../src/nn/layers.js';
import { assertClose, hasCpu } from '../helpers.js';

const CONFIG = {
  model_type: 'bert', vocab_size: 40, hidden_size: 16, num_hidden_layers: 2, num_attention_heads: 4,
  intermediate_size: 24, max_position_embeddings: 16, type_vocab_size: 2, pad_token_id: 0,
};

/** A Linear the fused paths leave alone (they check for exactly Linear). */
class UnfusedLinear extends Linear {}

function unfuse(model: BertModel): void {
  for (const layer of model.encoder.layer) Object.setPrototypeOf(layer.intermediate.dense, UnfusedLinear.prototype);
}

/** mean hidden state weighted by a fixed pattern, over a padded batch; the output and every gradient */
function lossAndGrads(model: BertModel, backend: k.BackendName, dtype: k.DType, half = false): { h: k.Tensor; grads: Map<string, k.Tensor> } {
  if (half) return k.autocast('bfloat16', () => lossAndGrads(model, backend, dtype));
  model.zeroGrad();
  const ids = k.tensor([[5, 9, 3, 17, 2, 0], [7, 1, 30, 0, 0, 0]], { dtype: 'int64', backend });
  const mask = k.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0]], { dtype: 'int64', backend });
  const h = model.forward({ inputIds: ids, attentionMask: mask }).lastHiddenState;
  const wts = k.tensor(Array.from({ length: h.numel }, (_, i) => Math.sin(i)), { shape: [...h.shape], dtype, backend });
  h.mul(wts).sum().backward();
  const grads = new Map(model.namedParameters().filter(([, p]) => p.grad).map(([n, p]) => [n, p.grad!.clone()]));
  return { h: h.detach(), grads };
}

function compare(backend: k.BackendName, dtype: k.DType, tol: { atol: number; rtol: number }, half = false): void {
  k.tidy(() => {
    k.manualSeed(3);
    const model = buildModel(CONFIG, 'test config', { dtype, backend }) as BertModel;
    // the fused run calls the encoder's GELU kernel (once per layer), the re-classed one never
    const enc = k.getBackend(backend).encoder!;
    const biasGelu = enc.biasGelu;
    let calls = 0;
    Object.assign(enc, { biasGelu: (...a: Parameters<typeof biasGelu>) => (calls++, biasGelu.apply(enc, a)) });
    try {
      const fused = lossAndGrads(model, backend, dtype, half);
      assert.equal(calls, CONFIG.num_hidden_layers);
      unfuse(model);
      const plain = lossAndGrads(model, backend, dtype, half);
      assert.equal(calls, CONFIG.num_hidden_layers);
      if (half) {
        // two bf16 computations differ from each other by up to twice their own error: each is checked
        // against the exact answer instead, the same model in float64 on the reference backend
        k.manualSeed(3);
        const exact = lossAndGrads(buildModel(CONFIG, 'test config', { dtype: 'float64', backend: 'ref' }) as BertModel, 'ref', 'float64');
        check(fused, exact, tol, true);
        check(plain, exact, tol, true);
      } else check(fused, plain, tol);
    } finally {
      Object.assign(enc, { biasGelu });
    }
    model.dispose();
  });
}

/**
 * tol as given, or (relative) atol scaled by each tensor's largest magnitude in `want`, at least a tenth of
 * the largest gradient's (a gradient that is exactly 0, as the key bias's, still gets the rounding noise
 * the others pass it)
 */
function check(got: ReturnType<typeof lossAndGrads>, want: ReturnType<typeof lossAndGrads>, tol: { atol: number; rtol: number }, relative = false): void {
  const peak = (t: k.Tensor): number => Math.max(...Array.from(t.toFloat32Array(), Math.abs));
  const floor = 0.1 * Math.max(...[...want.grads.values()].map(peak));
  const scaled = (t: k.Tensor) => (relative ? { atol: tol.atol * Math.max(peak(t), floor), rtol: 0 } : tol);
  assertClose(got.h, want.h, { ...scaled(want.h), what: 'last hidden state' });
  assert.ok(want.grads.size > 20);
  assert.deepEqual([...got.grads.keys()].sort(), [...want.grads.keys()].sort());
  for (const [name, g] of want.grads) assertClose(got.grads.get(name)!, g, { ...scaled(g), what: `grad ${name}` });
}

describe('BERT fused layer paths = layer by layer', () => {
  test('reference backend, float64', () => compare('ref', 'float64', { atol: 1e-12, rtol: 1e-9 }));
  test('CPU backend, float32', { skip: hasCpu() ? false : 'native addon not built' }, () => compare('cpu', 'float32', { atol: 2e-5, rtol: 1e-4 }));
  // under autocast the fused GELU writes bf16 and its dz is rounded once to bf16 from the incoming
  // bf16 gradient; the unfused path rounds the float32 dz: each is within bf16 roundings (2^-8 relative,
  // a few of them through two layers) of the float64 answer, measured at most 0.6% of each tensor's scale
  test('CPU backend, bf16 autocast', { skip: hasCpu() ? false : 'native addon not built' }, () =>
    compare('cpu', 'float32', { atol: 2 ** -6, rtol: 0 }, true));
});
