// Activation checkpointing in the decoder: full and selective recomputation give bit-identical
// loss and gradients, while memory.stats() shows a lower activation peak.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { decoderConfig } from '../../src/models/registry.js';

const config = decoderConfig({
  model_type: 'llama', vocab_size: 64, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 4,
  num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 128,
}, 'test config');

function run(mode: k.Checkpointing) {
  k.manualSeed(5);
  const model = new k.CausalLM(config);
  model.checkpointing = mode;
  const ids = k.randint(0, 64, [2, 48], { generator: new k.Generator(1) });
  const base = k.memory.stats().current.activation;
  k.memory.resetPeak();
  const loss = k.tidy(() => model.forward({ inputIds: ids, labels: ids }).loss!);
  const forwardPeak = k.memory.stats().peak.activation - base;
  loss.backward();
  const out = { loss: loss.item(), grads: model.namedParameters().map(([n, p]) => [n, Array.from(p.grad!.toFloat32Array())]), forwardPeak };
  loss.dispose();
  ids.dispose();
  model.dispose();
  return out;
}

test('full and selective checkpointing: same loss and gradients bit for bit, lower activation peak', () => {
  const plain = run('none');
  for (const mode of ['full', 'selective'] as const) {
    const ck = run(mode);
    assert.equal(ck.loss, plain.loss, mode);
    assert.deepEqual(ck.grads, plain.grads, mode);
    assert.ok(ck.forwardPeak < plain.forwardPeak * (mode === 'full' ? 0.5 : 0.9), `${mode}: ${ck.forwardPeak} vs ${plain.forwardPeak}`);
  }
});
