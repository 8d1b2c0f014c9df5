// LoRA and QLoRA on the experts of the qwen2-moe fixture (transformers 4.44: every routed expert is
// its own Linear, so PEFT's target_modules "gate_proj", "up_proj", "down_proj" wrap each routed
// expert and the shared expert by suffix match). The grouped path (adapters as two more grouped
// passes; 4-bit experts through the fused quantLinear per expert row block) must equal the
// per-expert loop: loss and every trainable gradient. A few AdamW steps must lower the loss.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { loadCausalLM } from '../../src/models/load.js';
import { quantizeModel } from '../../src/quant/quantize_model.js';
import type { SparseMoe } from '../../src/models/moe.js';
import { assertClose, hasCpu } from '../helpers.js';
import { fixture } from '../fixtures.js';

const fx = fixture('models', 'qwen2-moe');
const TARGETS = ['q_proj', 'v_proj', 'gate_proj', 'up_proj', 'down_proj'];

async function loraModel(quantized: boolean): Promise<k.CausalLM> {
  const { model } = await loadCausalLM(fx.path, { backend: 'cpu' });
  if (!(model instanceof k.CausalLM)) throw new Error('qwen2-moe must load as a CausalLM');
  if (quantized) quantizeModel(model, { type: 'nf4', skip: ['gate', 'shared_expert_gate'] });
  k.manualSeed(7);
  k.lora.injectLora(model, { r: 4, alpha: 8, targetModules: TARGETS });
  // B starts at zero (PEFT's init): give it values so the adapters change the output
  k.noGrad(() => {
    for (const [name, t] of k.lora.adapterTensors(model))
      if (name.includes('lora_B')) k.getBackend('cpu').kernels.copy(k.tidy(() => k.mul(k.randn(t.shape as number[], { backend: 'cpu' }), 0.05)), t);
  });
  return model;
}

const blocks = (m: k.CausalLM): SparseMoe[] => m.model.layers.map((l) => l.sparseBlock()!);

function lossAndGrads(m: k.CausalLM, g: SafetensorsFile, loop: boolean): { loss: number; grads: Map<string, Float32Array> } {
  for (const b of blocks(m)) b.loop = loop;
  const params = m.parameters().filter((p) => p.requiresGrad);
  for (const p of params) p.zeroGrad();
  return k.tidy(() => {
    const t = (n: string): k.Tensor => g.tensor(n).to('cpu');
    const out = m.forward({ inputIds: t('input_ids'), attentionMask: t('attention_mask'), labels: t('labels') });
    out.loss!.backward();
    return { loss: out.loss!.item(), grads: new Map(m.namedParameters().filter(([, p]) => p.requiresGrad).map(([n, p]) => [n, p.grad!.toFloat32Array()])) };
  });
}

describe('LoRA / QLoRA on qwen2-moe experts', { skip: fx.skip || (hasCpu() ? false : 'cpu addon not built') }, () => {
  test("PEFT's naming: target_modules wrap every routed expert and the shared expert", async () => {
    const m = await loraModel(false);
    const keys = [...k.lora.adapterTensors(m).keys()];
    for (const n of ['mlp.experts.0.gate_proj', 'mlp.experts.7.down_proj', 'mlp.shared_expert.up_proj', 'self_attn.q_proj'])
      assert.ok(keys.includes(`base_model.model.model.layers.1.${n}.lora_A.weight`), n);
    // 2 layers x (8 experts x 3 + shared 3 + q, v) x (A, B)
    assert.equal(keys.length, 2 * (8 * 3 + 3 + 2) * 2);
    assert.ok(!keys.some((n) => n.includes('mlp.gate.')), 'the router is not a target');
    m.dispose();
  });

  for (const quantized of [false, true])
    test(`${quantized ? 'QLoRA (nf4 experts)' : 'LoRA'}: grouped equals the per-expert loop (loss, every adapter gradient)`, async () => {
      const m = await loraModel(quantized);
      using g = new SafetensorsFile(join(fx.path, 'golden.safetensors'));
      assert.ok(blocks(m).every((b) => b.groupable()), 'the grouped path takes these experts');
      const loop = lossAndGrads(m, g, true);
      const grouped = lossAndGrads(m, g, false);
      assertClose([grouped.loss], [loop.loss], { atol: 1e-5, rtol: 1e-5, what: 'loss' });
      assert.equal(grouped.grads.size, loop.grads.size);
      for (const [n, want] of loop.grads) {
        const scale = want.reduce((a, x) => Math.max(a, Math.abs(x)), 0);
        assertClose(grouped.grads.get(n)!, want, { atol: 1e-4 * scale + 1e-9, rtol: 1e-3, what: n });
      }
      m.dispose();
    });

  test('a few AdamW steps on the adapters (experts included) lower the loss', async () => {
    const m = await loraModel(true);
    using g = new SafetensorsFile(join(fx.path, 'golden.safetensors'));
    const params = m.parameters().filter((p) => p.requiresGrad);
    const opt = new k.optim.AdamW(params, { lr: 1e-2 });
    const losses: number[] = [];
    for (let step = 0; step < 6; step++) {
      losses.push(lossAndGrads(m, g, false).loss);
      opt.step();
    }
    assert.ok(losses[5] < losses[0] - 0.1, `loss ${losses.map((l) => l.toFixed(3)).join(' -> ')}`);
    m.dispose();
  });
});
