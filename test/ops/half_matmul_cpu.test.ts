// The ops that Backend.halfMatmul switches onto the CPU's native bf16/fp16 GEMM (native/gemm_half.h):
// matmul and linear under autocast (forward and backward) against the float64 product of the
// bf16-rounded operands, attention and a tiny Llama training step under bf16 autocast against
// float32, fused LoRA over a quantized base with half inputs and dropout (half adds through the op),
// and the chunked head's half gradients rescaled by a non-unit loss gradient.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as k from '../../src/index.js';
import { decoderConfig } from '../../src/models/registry.js';
import { loraComposite, loraLinearGroup, type LoraProjection } from '../../src/lora/fused_lora.js';
import { assertClose, hasCpu, seededTensor } from '../helpers.js';

const skip = hasCpu() ? false : 'native addon not built';
const BF16_ULP = 2 ** -8; // relative spacing of bfloat16 (8 significant bits)

/** The float64 value of t rounded to bf16 (the operand the GEMM multiplies), on ref. */
const rounded = (t: k.Tensor): k.Tensor => t.to('ref').to('bfloat16').to('float64');

test('cpu backend takes half operands in its GEMM', { skip }, () => {
  assert.equal(k.getBackend('cpu').halfMatmul, true);
});

test('autocast(bfloat16) matmul and linear: forward and gradients = float64 products of the rounded operands, rounded once', { skip }, () => {
  for (const [B, T, K, N] of [[1, 7, 33, 257], [2, 33, 257, 7], [3, 1, 1, 33]]) {
    k.tidy(() => {
      const x = seededTensor([B, T, K], 'float32', 'cpu', 1 + K).requiresGrad_();
      const w = seededTensor([N, K], 'float32', 'cpu', 2 + N).requiresGrad_();
      const b = seededTensor([N], 'float32', 'cpu', 3);
      const g = seededTensor([B, T, N], 'bfloat16', 'cpu', 4); // dL/dy arrives in y's dtype
      const y = k.autocast('bfloat16', () => k.linear(x, w));
      assert.equal(y.dtype, 'bfloat16');
      // with a float32 bias the result is float32 (x Wᵀ + b accumulated in float32)
      const yb = k.autocast('bfloat16', () => k.linear(x, w, b));
      assert.equal(yb.dtype, 'float32');
      y.backward(g);
      const what = `[${B}, ${T}, ${K}] x [${N}, ${K}]ᵀ`;
      // float32 accumulation of K exact products, then one bf16 rounding of the result
      const tol = (n: number) => ({ atol: 4 * (Math.sqrt(n) + 1) * 2 ** -24 * n, rtol: BF16_ULP });
      const xw = k.matmul(rounded(x), rounded(w).t());
      assertClose(y, xw, { ...tol(K), what: `${what} forward` });
      // with a bias, one GEMM accumulates the product onto the float32 bias (src/ops/fused/linear.ts):
      // float32 accumulation of x Wᵀ + b with no bf16 rounding in between
      const f32Tol = { atol: 4 * (Math.sqrt(K) + 1) * 2 ** -24 * (K + 1), rtol: 4 * 2 ** -24 * Math.sqrt(K) };
      assertClose(yb, xw.add(b.to('ref').to('float64')), { ...f32Tol, what: `${what} forward with bias` });
      assertClose(x.grad!, k.matmul(rounded(g), rounded(w)), { ...tol(N), what: `${what} dx` });
      assertClose(w.grad!, k.matmul(rounded(g).reshape([-1, N]).t(), rounded(x).reshape([-1, K])), { ...tol(B * T), what: `${what} dW` });
      // and the float32 product within the inputs' bf16 rounding (2^-9 relative per operand, ~sqrt(K) terms)
      assertClose(y, k.linear(x, w), { atol: 2 ** -8 * Math.sqrt(K), rtol: 2e-2, what: `${what} vs float32` });
    });
  }
});

test('float16 operands: matmul of half tensors writes half, within one fp16 rounding of the float64 product', { skip }, () => {
  k.tidy(() => {
    const a = seededTensor([33, 257], 'float16', 'cpu', 5);
    const b = seededTensor([257, 7], 'float16', 'cpu', 6);
    const y = k.matmul(a, b);
    assert.equal(y.dtype, 'float16');
    assertClose(y, k.matmul(a.to('ref').to('float64'), b.to('ref').to('float64')), { atol: 1e-4, rtol: 2 ** -11, what: 'fp16 matmul' });
  });
});

test('attention under bf16 autocast (projections on the half GEMM) stays within bf16 rounding of float32', { skip }, () => {
  k.tidy(() => {
    const [Bt, H, T, hd] = [2, 3, 17, 16];
    const x = seededTensor([Bt, T, H * hd], 'float32', 'cpu', 7).requiresGrad_();
    const wq = seededTensor([H * hd, H * hd], 'float32', 'cpu', 8, -0.2, 0.2);
    const f = () => {
      const q = k.linear(x, wq).reshape([Bt, T, H, hd]).transpose(1, 2);
      return k.scaledDotProductAttention(q, q, q, { causal: true }).to('float32');
    };
    const y = k.autocast('bfloat16', f);
    const y32 = f();
    assertClose(y, y32, { atol: 3e-2, rtol: 3e-2, what: 'attention forward' });
    y.sum().backward();
    const g = x.grad!.clone();
    x.zeroGrad();
    y32.sum().backward();
    assertClose(g, x.grad!, { atol: 5e-2, rtol: 5e-2, what: 'attention dx' });
  });
});

const config = decoderConfig({
  model_type: 'llama', vocab_size: 40, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2,
  num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64,
}, 'half matmul cpu test config');
const rows = Array.from({ length: 3 }, (_, i) => Array.from({ length: 12 }, (_, t) => (i * 11 + t * 7 + 3) % 40));
const batch: k.data.Batch = { inputIds: rows, labels: rows, attentionMask: rows.map((r) => r.map(() => 1)) };

function llamaStep(autocast: 'bfloat16' | null): { loss: number; grads: Map<string, Float32Array> } {
  k.manualSeed(5);
  const model = new k.CausalLM(config, { backend: 'cpu' });
  const { loss } = k.train.accumulateGradients(model, [batch], { autocast });
  const grads = new Map([...model.namedParameters()].map(([n, p]) => [n, p.grad!.to('float32').toFloat32Array()]));
  model.dispose();
  return { loss, grads };
}

test('a tiny Llama training step under bf16 autocast: loss and gradients close to float32', { skip }, () => {
  const f32 = llamaStep(null), bf16 = llamaStep('bfloat16');
  assertClose([bf16.loss], [f32.loss], { atol: 0, rtol: 1e-2, what: 'loss' });
  for (const [name, g] of f32.grads) {
    const h = bf16.grads.get(name)!;
    let num = 0, den = 0;
    for (let i = 0; i < g.length; i++) {
      num += (h[i] - g[i]) ** 2;
      den += g[i] ** 2;
    }
    // bf16 activations and operands: each gradient within a few percent (relative L2) of float32's
    assert.ok(Math.sqrt(num / Math.max(den, 1e-30)) < 5e-2, `${name}: relative L2 error ${Math.sqrt(num / den)}`);
  }
});

test('fused LoRA over quantized bases with bf16 x and dropout: half adds go through the op (= composite)', { skip }, () => {
  k.tidy(() => {
    const [N, inF, outF, r] = [9, 40, 24, 4];
    const ps: LoraProjection[] = [0, 1].map((i) => {
      const lin = new k.nn.Linear(inF, outF, { bias: false });
      const base = k.quant.QuantLinear.fromLinear(lin, { type: 'nf4', blockSize: 32 });
      base.to('bfloat16');
      const A = k.keep(seededTensor([r, inF], 'bfloat16', 'cpu', 10 + i, -0.5, 0.5)).requiresGrad_();
      const B = k.keep(seededTensor([outF, r], 'bfloat16', 'cpu', 20 + i, -0.5, 0.5)).requiresGrad_();
      return { base, A, B, scaling: 2, dropout: i === 1 ? 0.3 : 0 };
    });
    const run = (f: (x: k.Tensor) => k.Tensor[]) => {
      const x = seededTensor([N, inF], 'bfloat16', 'cpu', 30).requiresGrad_();
      for (const p of ps) { p.A.zeroGrad(); p.B.zeroGrad(); }
      const ys = f(x);
      ys.reduce((acc: k.Tensor | null, y, i) => { const t = y.to('float32').mul(i + 1).sum(); return acc ? acc.add(t) : t; }, null)!.backward();
      return [...ys.map((y) => y.to('float32')), x.grad!.to('float32'), ...ps.flatMap((p) => [p.A.grad!.to('float32'), p.B.grad!.to('float32')])];
    };
    const fused = run((x) => loraLinearGroup(x, ps, { generator: new k.Generator(3) }));
    const composite = run((x) => ps.map((p) => loraComposite(x, p, { generator: new k.Generator(3) })));
    fused.forEach((t, i) => assertClose(t, composite[i], { atol: 3e-2, rtol: 3e-2, what: `output/grad #${i}` }));
  });
});

test('chunked head with bf16 inputs: a loss gradient of 3 scales the half gradients in place (through the op)', { skip }, () => {
  k.tidy(() => {
    const [N, D, V] = [21, 16, 37];
    const h = seededTensor([N, D], 'bfloat16', 'cpu', 40).requiresGrad_();
    const w = seededTensor([V, D], 'bfloat16', 'cpu', 41).requiresGrad_();
    const t = k.tensor(Array.from({ length: N }, (_, i) => (i * 7) % V), { dtype: 'int64' });
    const opts = { chunkSize: 8 };
    k.linearCrossEntropy(h, w, t, opts).backward();
    const [dh1, dw1] = [h.grad!.to('float32'), w.grad!.to('float32')];
    h.zeroGrad();
    w.zeroGrad();
    k.linearCrossEntropy(h, w, t, opts).mul(3).backward();
    assert.equal(h.grad!.dtype, 'bfloat16');
    // 3 g rounded once to bf16 vs 3 round(g): within one bf16 ulp of 3 g
    assertClose(h.grad!, dh1.mul(3), { atol: 1e-6, rtol: 2 * BF16_ULP, what: 'dh x 3' });
    assertClose(w.grad!, dw1.mul(3), { atol: 1e-6, rtol: 2 * BF16_ULP, what: 'dw x 3' });
  });
});
