// LoRA over a bf16 frozen base (castFrozenLinears + autocast('bfloat16'), finetune's default on CPUs
// with native bf16) against the same adapters over the float32 base, on the transformers llama
// fixture: the frozen weights' memory halves, the adapters' gradients agree within bf16 rounding, a
// few training steps give the same greedy ids, saved adapters have the float32 format, merge works.
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { assertClose } from '../helpers.js';
import { fixture } from '../fixtures.js';

const base = fixture('models', 'llama');
const CONFIG: k.lora.LoraConfig = { r: 4, alpha: 8, targetModules: 'all-linear' };

/** The fixture model with LoRA on every linear layer but the head; B set to seeded values so dA is not zero. */
async function loraModel(): Promise<k.CausalLM> {
  const { model } = await k.loadCausalLM(base.path);
  assert.ok(model instanceof k.CausalLM);
  k.manualSeed(7);
  k.lora.injectLora(model, CONFIG);
  const gen = new k.Generator(11);
  k.noGrad(() => {
    for (const l of k.lora.loraLayers(model).values()) {
      const B = l.lora_B.get('default').weight;
      k.tidy(() => k.getBackend(B.backendName).kernels.copy(k.mul(k.randn(B.shape, { generator: gen }), 0.02), B));
    }
  });
  return model;
}

const loraGrads = (m: k.CausalLM): Map<string, k.Tensor> =>
  new Map(m.namedParameters().filter(([, p]) => p.requiresGrad).map(([n, p]) => [n, p.grad!]));

test('castFrozenLinears: frozen Linear weights to bf16, adapters and embeddings stay float32, param memory of the base halves', { skip: base.skip }, async () => {
  const m = await loraModel();
  const frozen = m.namedModules().filter(([, x]) => x instanceof k.nn.Linear && !(x as k.nn.Linear).weight.requiresGrad);
  // 2 layers x 7 projections (q k v o gate up down), each a LoRA base, plus the untied lm_head
  assert.equal(frozen.length, 15);
  const weightBytes = frozen.reduce((n, [, x]) => n + (x as k.nn.Linear).weight.numel * 4, 0);
  const before = k.memory.stats().current.param;
  assert.equal(k.lora.castFrozenLinears(m, 'bfloat16'), 15);
  // exactly half of the frozen weights' float32 bytes are given back; nothing else changed size
  assert.equal(before - k.memory.stats().current.param, weightBytes / 2);
  for (const [n, x] of frozen) assert.equal((x as k.nn.Linear).weight.dtype, 'bfloat16', n);
  for (const [n, p] of m.namedParameters()) if (p.requiresGrad) assert.equal(p.dtype, 'float32', `${n} is a float32 master weight`);
  assert.equal(m.model.embed_tokens.weight.dtype, 'float32');
  assert.equal(k.lora.castFrozenLinears(m, 'bfloat16'), 0, 'a second call finds nothing left to cast');
  m.dispose();
});

test('LoRA over a bf16 frozen base: gradients within bf16 rounding of float32, same greedy ids after training, float32 adapter files, merge', { skip: base.skip }, async () => {
  using g = new SafetensorsFile(join(base.path, 'golden.safetensors'));
  const batch = { inputIds: g.tensor('input_ids'), attentionMask: g.tensor('attention_mask'), labels: g.tensor('labels') };
  const [ref, half] = [await loraModel(), await loraModel()];
  k.lora.castFrozenLinears(half, 'bfloat16');
  const run = (m: k.CausalLM, bf16: boolean): number => k.tidy(() => {
    const fwd = (): number => {
      const loss = m.forward(batch).loss!;
      loss.backward();
      return loss.item();
    };
    return bf16 ? k.autocast('bfloat16', fwd) : fwd();
  });
  for (const m of [ref, half]) m.train();
  const [l32, l16] = [run(ref, false), run(half, true)];
  // the loss is a mean of ~log(256) terms: bf16 rounding (2^-9 relative) of weights and activations moves it by ~1e-3
  assertClose([l16], [l32], { atol: 0, rtol: 5e-3, what: 'loss' });
  // gradients: every product rounds its operands to bf16 (2^-9 relative each), and the roundings of two
  // layers' forward and backward compound: measured on this fixture, the largest difference is 0.4-1.4%
  // of the tensor's largest entry. 3e-2 of it (5e-2 relative) leaves ~2x headroom, while a wrong term
  // (a missing s, a transposed B, a dropped base gradient) is off by O(1) of it
  const [g32, g16] = [loraGrads(ref), loraGrads(half)];
  assert.equal(g16.size, 28);
  for (const [n, want] of g32) {
    const got = g16.get(n)!;
    assert.equal(got.dtype, 'float32', `${n}: gradients of float32 master weights are float32`);
    const scale = want.toFloat32Array().reduce((a, x) => Math.max(a, Math.abs(x)), 0);
    assert.ok(scale > 0, `${n}: a nonzero reference gradient`);
    assertClose(got, want, { atol: 3e-2 * scale, rtol: 5e-2, what: n });
  }
  // a few AdamW steps on the same batch, then greedy decoding of the fixture prompt
  for (const [m, bf16] of [[ref, false], [half, true]] as const) {
    const opt = new k.optim.AdamW(m.parameters().filter((p) => p.requiresGrad), { lr: 1e-2 });
    for (let i = 0; i < 4; i++) {
      opt.step();
      opt.zeroGrad();
      run(m, bf16);
    }
    opt.zeroGrad();
    opt.dispose();
  }
  const prompt = g.tensor('gen.prompt_ids');
  const greedy = async (m: k.CausalLM): Promise<unknown> => {
    m.eval();
    return (await m.generate(prompt, { maxNewTokens: 12, temperature: 0 })).toArray();
  };
  assert.deepEqual(await greedy(half), await greedy(ref), 'same greedy ids after training over a bf16 base');
  // the adapter file: the same keys, shapes and float32 dtype as one trained over the float32 base
  const dirs = [ref, half].map((m) => {
    const dir = mkdtempSync(join(tmpdir(), 'kestrel-bf16-adapter-'));
    k.lora.saveAdapter(m, dir, CONFIG);
    return new SafetensorsFile(join(dir, 'adapter_model.safetensors'));
  });
  assert.deepEqual([...dirs[1].names].sort(), [...dirs[0].names].sort());
  for (const n of dirs[0].names) assert.deepEqual([dirs[1].info(n).dtype, dirs[1].info(n).shape], [dirs[0].info(n).dtype, dirs[0].info(n).shape], n);
  assert.ok(dirs[0].names.every((n) => dirs[0].info(n).fileDtype === 'F32'), 'adapters are saved in float32');
  for (const f of dirs) f.close();
  // merging folds s B A into the bf16 base; its logits equal the adapter's (float32 activations, eval)
  const ids = g.tensor('input_ids');
  const logits = (m: k.CausalLM): k.Tensor => k.noGrad(() => m.forward({ inputIds: ids }).logits!);
  const unmerged = logits(half);
  assert.equal(k.lora.mergeLora(half), 14);
  // the merged weight is rounded to bf16 once more (the base's dtype): 2^-9 of each weight
  const scale = unmerged.toFloat32Array().reduce((a, x) => Math.max(a, Math.abs(x)), 0);
  assertClose(logits(half), unmerged, { atol: 2e-2 * scale, rtol: 2e-2, what: 'merged logits' });
  ref.dispose();
  half.dispose();
});
