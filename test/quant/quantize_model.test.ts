// quantizeModel on a tiny random Llama: every Linear but lm_head (and skipped names) becomes a
// QuantLinear under the same path, logits stay close to the float model (relative RMS error
// bounded by the format's precision: NF4 ~ 1/10, int8 ~ 1/100 of the signal), and resident
// parameter bytes of the replaced layers shrink to about 1/8 (4-bit) or 1/4 (int8) of float32.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { decoderConfig } from '../../src/models/registry.js';

const config = decoderConfig({
  model_type: 'llama', vocab_size: 64, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2,
  num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64,
}, 'test config');

const PER_LAYER = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'];

/** Relative RMS difference ||a - b|| / ||b||. */
function relRms(a: k.Tensor, b: k.Tensor): number {
  return k.tidy(() => Math.sqrt(a.sub(b).pow(2).sum().item() / b.pow(2).sum().item()));
}

// 4-bit: 1/2 byte per value + a float32 absmax per 64 values + a 64-byte code table per layer;
// int8: 1 byte per value + a float32 SCB per row
const quantBytesOf = (type: k.quant.QuantType, l: k.nn.Linear): number => {
  const n = l.weight.numel;
  return type === 'int8' ? n + l.outFeatures * 4 : n / 2 + (n / 64) * 4 + 64;
};

for (const [type, maxErr, ratio] of [['nf4', 0.15, 0.145], ['fp4', 0.25, 0.145], ['int8', 0.02, 0.27]] as const)
  test(`${type}: logits close to the float model, parameter bytes of the quantized layers < ${ratio.toFixed(3)} of float32`, () => {
    k.manualSeed(9);
    const model = new k.CausalLM(config);
    const ids = k.randint(0, 64, [2, 12], { generator: new k.Generator(2) });
    const ref = k.noGrad(() => k.tidy(() => model.forward({ inputIds: ids }).logits!));
    const linears = model.namedModules().filter(([, m]) => m instanceof k.nn.Linear);
    const replaced = linears.filter(([p]) => p !== 'lm_head').map(([, m]) => m as k.nn.Linear);
    const floatBytes = replaced.reduce((s, l) => s + l.weight.numel * 4, 0);
    const wantBytes = replaced.reduce((s, l) => s + quantBytesOf(type, l), 0);
    const before = k.memory.stats().current.param;
    const paths = k.quant.quantizeModel(model, { type });
    const after = k.memory.stats().current.param;
    assert.deepEqual(paths, [0, 1].flatMap((i) => PER_LAYER.map((p) => `model.layers.${i}.${p}`)));
    assert.ok(model.lm_head instanceof k.nn.Linear, 'lm_head stays float');
    assert.ok(Reflect.get(Reflect.get(model.model.layers[0], 'self_attn'), 'q_proj') instanceof k.quant.QuantLinear);
    const quantBytes = floatBytes - (before - after);
    assert.equal(quantBytes, wantBytes, 'the old float weights are freed; only the quantized bytes remain');
    assert.ok(quantBytes / floatBytes < ratio, `${quantBytes} of ${floatBytes} bytes (${quantBytes / floatBytes})`);
    const got = k.noGrad(() => k.tidy(() => model.forward({ inputIds: ids }).logits!));
    const err = relRms(got, ref);
    assert.ok(err < maxErr && err > 0, `relative logits error ${err}`);
    for (const t of [got, ref, ids]) t.dispose();
    model.dispose();
  });

test('skip keeps names or paths in float; gradients flow through the quantized layers', () => {
  k.manualSeed(10);
  const model = new k.CausalLM(config);
  const paths = k.quant.quantizeModel(model, { type: 'nf4', doubleQuant: true, skip: ['down_proj', 'model.layers.1.self_attn.q_proj'] });
  assert.equal(paths.length, 14 - 2 - 1);
  assert.ok(!paths.some((p) => p.endsWith('down_proj') || p === 'model.layers.1.self_attn.q_proj'));
  const ids = k.randint(0, 64, [1, 8], { generator: new k.Generator(3) });
  const loss = k.tidy(() => model.forward({ inputIds: ids, labels: ids }).loss!);
  loss.backward();
  // the embeddings sit below every quantized layer: their gradient crossed them all
  const g = model.model.embed_tokens.weight.grad!;
  assert.ok(k.tidy(() => g.abs().sum().item()) > 0);
  const quantized = model.namedModules().filter(([, m]) => m instanceof k.quant.QuantLinear).map(([p]) => p);
  assert.deepEqual(quantized, paths);
  for (const t of [loss, ids]) t.dispose();
  model.dispose();
  assert.throws(() => k.quant.quantizeModel(new k.CausalLM(config), { type: 'nf4', blockSize: 100 }), /blockSize must be a power of two/);
});
