// The decoder's fused decode ops (Attention.fusedInput: RMSNorm + merged Q|K|V + bias + RoPE in one
// kernel, src/ops/fused/rms_norm_qkv_rope.ts; Mlp.fusedForward: RMSNorm + merged gate|up + act(gate)
// * up, rms_norm_gate_up_glu.ts; o_proj and down_proj summing the residual, linear_residual.ts)
// against the same model run through the separate ops
// (KESTREL_DECODE_FUSION=off), on transformers' fixture models: plain Llama, Qwen2 (q/k/v biases),
// Gemma (norm offset 1, GELU), Phi-3 (one qkv_proj and gate_up_proj), Mistral (sliding window), in
// float32, bf16, int8 and q4 weights (q/k/v and gate/up merged). Step by step through the KV cache:
//  - greedy ids equal, and for float32 they are transformers' own (the golden continuation);
//  - logits equal bit for bit: the kernels normalize and rotate with the rms_norm and rope kernels'
//    own bodies (native/nn.cc), a float part accumulates onto its bias as linear() does, a merged
//    quantized weight gives each row the product the separate GEMV gives it, and the activation
//    and residual sums are the glu and add kernels' operations;
//  - each fused kernel runs once per layer and decode step.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { KVCache } from '../../src/models/kv_cache.js';
import { skipUnless } from '../devices.js';
import { fixture } from '../fixtures.js';
import { withEnv } from '../helpers.js';

const FIXTURES = ['llama', 'qwen2', 'gemma', 'phi3', 'mistral-sliding-window'];
const STEPS = 6;

/** Greedy decoding step by step from `prompt`: the ids, each step's last logits, and the fused kernel's calls. */
function decode(model: k.CausalLM, prompt: number[]): { ids: number[]; logits: Float32Array[]; fusedCalls: number; fusedMlpCalls: number; residualCalls: number } {
  const c = model.config;
  const cache = new KVCache(c.numLayers, 1, c.numKvHeads, prompt.length + STEPS, c.headDim, { backend: 'cpu' });
  const ids = prompt.slice();
  const logits: Float32Array[] = [];
  k.profile.start({ backend: 'cpu' });
  for (let s = 0; s < STEPS; s++) {
    const fresh = s === 0 ? prompt : [ids[ids.length - 1]];
    const row = k.noGrad(() => k.tidy(() => {
      const positions = k.tensor([fresh.map((_, i) => cache.length + i)], { dtype: 'int64', backend: 'cpu' });
      const out = model.forward({ inputIds: k.tensor([fresh], { dtype: 'int64', backend: 'cpu' }), positionIds: positions, cache, lastLogitsOnly: true });
      return out.logits!.reshape([-1]).toFloat32Array();
    }));
    logits.push(row);
    ids.push(row.indexOf(Math.max(...row)));
  }
  const prof = k.profile.stop();
  cache.dispose();
  const calls = (kernel: string): number => prof.kernels.filter((r) => r.name.startsWith(kernel)).reduce((n, r) => n + r.calls, 0);
  return { ids: ids.slice(prompt.length), logits, fusedCalls: calls('rmsNormQkvRope'), fusedMlpCalls: calls('rmsNormGateUpGlu'), residualCalls: calls('linearResidual') };
}

for (const name of FIXTURES) {
  const fx = fixture('models', name);
  describe(`fused decode input: ${name}`, { skip: fx.skip || skipUnless('cpu') }, () => {
    for (const quant of ['float32', 'bf16', 'int8', 'q4'] as const)
      test(`${quant}: greedy ids and logits = the separate ops'; one call of each fused kernel per layer and step`, async () => {
        const { model } = await k.loadCausalLM(fx.path, { backend: 'cpu', ...(quant === 'float32' ? {} : { quant }) });
        const lm = model as k.CausalLM;
        using g = new SafetensorsFile(join(fx.path, 'golden.safetensors'));
        const prompt = (g.tensor('gen.prompt_ids').toArray() as number[][])[0];
        const off = withEnv('KESTREL_DECODE_FUSION', 'off', () => decode(lm, prompt));
        const on = decode(lm, prompt);
        assert.equal(off.fusedCalls + off.fusedMlpCalls + off.residualCalls, 0);
        // the prompt step takes the fused op too where every part is float (any rows); quantized parts: 1..8 rows
        const fusedSteps = quant === 'float32' || prompt.length <= 8 ? STEPS : STEPS - 1;
        assert.equal(on.fusedCalls, fusedSteps * lm.config.numLayers, `${name} ${quant}: fused q|k|v calls`);
        assert.equal(on.fusedMlpCalls, fusedSteps * lm.config.numLayers, `${name} ${quant}: fused gate|up calls`);
        assert.equal(on.residualCalls, 2 * fusedSteps * lm.config.numLayers, `${name} ${quant}: o_proj and down_proj with the residual`);
        assert.deepEqual(on.ids, off.ids, `${name} ${quant}: greedy ids`);
        if (quant === 'float32') {
          const golden = (g.tensor('gen.output_ids').toArray() as number[][])[0].slice(prompt.length, prompt.length + STEPS);
          assert.deepEqual(on.ids.slice(0, golden.length), golden, `${name}: transformers' greedy ids`);
        }
        on.logits.forEach((row, step) => assert.deepEqual(row, off.logits[step], `${name} ${quant} step ${step}: logits`));
        model.dispose();
      });
  });
}

describe('fused decode: what the merged weight and the gating must not keep or take', { skip: fixture('models', 'qwen2').skip || skipUnless('cpu') }, () => {
  test('a bias changed after the merge is the one added (the merged q|k|v bias is never a stale copy)', async () => {
    const fx = fixture('models', 'qwen2');
    const { model } = await k.loadCausalLM(fx.path, { backend: 'cpu', quant: 'int8' });
    const lm = model as k.CausalLM;
    const prompt = [1, 2, 3];
    decode(lm, prompt); // merges q/k/v on first use
    // as loadStateDict does: a new value copied into the layer's own bias tensor
    for (const layer of lm.model.layers) for (const p of [layer.self_attn.q_proj!, layer.self_attn.k_proj!]) k.fill_(p.bias!, 0.25);
    const off = withEnv('KESTREL_DECODE_FUSION', 'off', () => decode(lm, prompt));
    const on = decode(lm, prompt);
    assert.ok(on.fusedCalls > 0);
    on.logits.forEach((row, step) => assert.deepEqual(row, off.logits[step], `step ${step}: logits with the new biases`));
    model.dispose();
  });

  test('a no-grad forward without a KV cache (a checkpointed or ZeRO-3 training pass) runs the separate ops', async () => {
    const fx = fixture('models', 'llama');
    const { model } = await k.loadCausalLM(fx.path, { backend: 'cpu' });
    k.profile.start({ backend: 'cpu' });
    k.noGrad(() => k.tidy(() => { (model as k.CausalLM).forward({ inputIds: k.tensor([[1, 2, 3, 4]], { dtype: 'int64', backend: 'cpu' }) }); }));
    const fused = k.profile.stop().kernels.filter((r) => /^(rmsNormQkvRope|rmsNormGateUpGlu|linearResidual)/.test(r.name));
    assert.deepEqual(fused, [], 'the decode-only kernels run only when generating');
    model.dispose();
  });
});
