// Training agrees across devices: the same model (weights made once, on the CPU) trained for a
// few AdamW steps on the CPU and on CUDA (a GPU, or the emulator in CI) from the same seed gives
// the same loss at every step (float32: 1e-4 relative; bf16 autocast: 2e-2) and the same weights.
import { ALL_DEVICES, skipUnless } from '../devices.js';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { decoderConfig } from '../../src/models/registry.js';
import { decayParamGroups } from '../../src/train/param_groups.js';
import { assertClose } from '../helpers.js';

const config = decoderConfig({
  model_type: 'llama', vocab_size: 40, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2,
  num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64,
}, 'devices test config');

const rows = Array.from({ length: 3 }, (_, i) => Array.from({ length: 12 }, (_, t) => (i * 11 + t * 7 + 3) % 40));
const batch: k.data.Batch = { inputIds: rows, labels: rows, attentionMask: rows.map((r) => r.map(() => 1)) };

function train(device: 'cpu' | 'cuda', autocast: 'bfloat16' | null): { losses: number[]; weights: Float32Array[] } {
  k.manualSeed(5);
  const model = new k.CausalLM(config, { backend: 'cpu' });
  if (device !== 'cpu') model.to(device);
  const opt = new k.optim.AdamW(decayParamGroups(model, 0.01), { lr: 3e-3 });
  const losses: number[] = [];
  for (let step = 0; step < 4; step++) {
    losses.push(k.train.accumulateGradients(model, [batch], { autocast }).loss);
    opt.step();
    opt.zeroGrad();
  }
  const weights = model.parameters().map((p) => p.toFloat32Array());
  model.dispose();
  return { losses, weights };
}

const cuda = ALL_DEVICES.includes('cuda') ? skipUnless('cuda') : 'no cuda device';

test('float32: loss trajectory and weights equal on cpu and cuda', { skip: skipUnless('cpu') || cuda }, () => {
  const a = train('cpu', null);
  const b = train('cuda', null);
  assertClose(b.losses, a.losses, { atol: 0, rtol: 1e-4, what: 'losses' });
  b.weights.forEach((w, i) => assertClose(w, a.weights[i], { atol: 1e-4, rtol: 1e-3, what: `param ${i}` }));
});

test('bf16 autocast: loss trajectory close on cpu and cuda', { skip: skipUnless('cpu') || cuda }, () => {
  const a = train('cpu', 'bfloat16');
  const b = train('cuda', 'bfloat16');
  assertClose(b.losses, a.losses, { atol: 0, rtol: 2e-2, what: 'losses' });
});
