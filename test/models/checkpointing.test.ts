// Activation checkpointing in the decoder: full and selective recomputation give bit-identical
// loss and gradients, while memory.stats() shows a lower activation peak; recomputing only the first
// n layers (checkpointLayers) holds the activations of the other layers, so its peak lies between.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { decoderConfig } from '../../src/models/registry.js';

const config = decoderConfig({
  model_type: 'llama', vocab_size: 64, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 4,
  num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 128,
}, 'test config');

function run(mode: k.Checkpointing, checkpointLayers: number | null = null) {
  k.manualSeed(5);
  const model = new k.CausalLM(config);
  model.checkpointing = mode;
  model.model.checkpointLayers = checkpointLayers;
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

test('checkpointLayers n: the first n layers recompute; same bits, a peak between none and full that grows with the layers kept', () => {
  const [plain, full] = [run('none'), run('full')];
  const peaks: number[] = [];
  for (const n of [3, 2, 1]) {
    const ck = run('full', n);
    assert.equal(ck.loss, plain.loss, `n ${n}`);
    assert.deepEqual(ck.grads, plain.grads, `n ${n}`);
    peaks.push(ck.forwardPeak);
  }
  // fewer recomputed layers keep more activations: full < n=3 < n=2 < n=1 < none (4 layers)
  const order = [full.forwardPeak, ...peaks, plain.forwardPeak];
  order.slice(1).forEach((p, i) => assert.ok(p > order[i], `peaks ${order.join(' < ')}`));
  assert.equal(run('full', 4).forwardPeak, full.forwardPeak, 'n = every layer is full');
  assert.equal(run('full', 0).forwardPeak, plain.forwardPeak, 'n = 0 recomputes nothing');
  const model = new k.CausalLM(config);
  model.model.checkpointLayers = 1.5;
  model.checkpointing = 'full';
  const ids = k.randint(0, 64, [1, 4]);
  assert.throws(() => k.tidy(() => model.forward({ inputIds: ids, labels: ids })), /checkpointLayers must be a whole number >= 0 \(or null for every layer\), got 1.5/);
  ids.dispose();
  model.dispose();
});
