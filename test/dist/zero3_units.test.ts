// ZeRO stage 3's bookkeeping in one process: which tensors form the units (every decoder layer's
// parameters above the persistence threshold, the embeddings, the final norm and the head; a tied
// head is the embedding unit called twice), that a partitioned layer holds placeholders whose
// use is an error naming the parameter, that a 1-rank stage 3 (collectives as copies) gives the
// same loss and shard gradients as plain autograd over the whole model (tied and untied: the tied
// embedding's gradient must be the sum of its lookup's and its head's), and the refusals: a
// parameter shared by two layers, a transport that cannot start calls inside the forward.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { backendOf } from '../../src/backend/index.js';
import { ProcessGroup } from '../../src/dist/process_group.js';
import type { Transport, TransportCall } from '../../src/dist/transport.js';
import { ZeroStage3 } from '../../src/dist/zero3.js';
import { findUnits } from '../../src/dist/zero3_units.js';
import { decoderConfig } from '../../src/models/registry.js';
import { decayParamGroups } from '../../src/train/param_groups.js';
import { assertClose } from '../helpers.js';

const tiny = (tied = false) => new k.CausalLM(decoderConfig({
  model_type: 'llama', vocab_size: 32, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 2, num_attention_heads: 2, num_key_value_heads: 1,
  tie_word_embeddings: tied,
}, 'zero3 units test'), { generator: new k.Generator(4), backend: 'cpu' });

/** A transport of `ranks` ranks whose calls, on one rank, are copies (allGather and reduceScatter of a group of one). */
function localTransport(ranks: number[]): Transport {
  return {
    rank: 0, ranks,
    run(c: TransportCall) {
      if (c.src && c.dst) backendOf(c.dst).kernels.copy(c.src, c.dst);
      return Promise.resolve();
    },
    pieceElements: () => 1 << 20,
    subgroup: () => { throw new Error('no subgroups'); },
    close: () => {},
  };
}
const group = (ranks: number[]) => new ProcessGroup(localTransport(ranks), { timeoutMs: 1000 });

test('ZeRO-3 units: embeddings, one per decoder layer, final norm, head; a tied head is the embedding unit\'s second call; parameters under the persistence threshold stay whole', () => {
  const model = tiny();
  const { units, calls } = findUnits(model, 0);
  assert.deepEqual(units.map((u) => u.path), ['model.embed_tokens', 'model.layers.0', 'model.layers.1', 'model.norm', 'lm_head']);
  assert.deepEqual(calls.map((c) => [c.unit, c.method]), [[0, 'forward'], [1, 'forward'], [2, 'forward'], [3, 'forward'], [4, 'headForward']]);
  assert.ok(units[2].params.some(([n]) => n === 'model.layers.1.self_attn.q_proj.weight'));
  assert.equal(units[1].params.length, 9, 'q, k, v, o, gate, up, down and two norms');
  assert.deepEqual(units[4].params.map(([n]) => n), ['lm_head.weight']);
  const big = findUnits(model, 100); // the norms (16 elements) persist: the final norm is no unit
  assert.deepEqual(big.units.map((u) => u.path), ['model.embed_tokens', 'model.layers.0', 'model.layers.1', 'lm_head']);
  assert.deepEqual(big.units[1].params.map(([n]) => n).filter((n) => n.includes('norm')), []);
  model.dispose();
  const tied = tiny(true);
  const t = findUnits(tied, 0);
  assert.deepEqual(t.units.map((u) => u.path), ['model.embed_tokens', 'model.layers.0', 'model.layers.1', 'model.norm']);
  assert.deepEqual(t.calls.map((c) => [c.unit, c.method]), [[0, 'forward'], [1, 'forward'], [2, 'forward'], [3, 'forward'], [0, 'headForward']]);
  tied.dispose();
});

for (const tied of [false, true]) test(`ZeRO-3 on 1 rank${tied ? ', tied embeddings' : ''}: placeholders between uses (an error naming the parameter), the same loss and gradients as plain autograd`, () => {
  const ids = k.tensor([[1, 5, 9, 3, 7, 2]], { dtype: 'int64', backend: 'cpu' });
  const plain = tiny(tied);
  // the trainer's call (returnLogits false: the fused head + loss)
  const want = plain.forward({ inputIds: ids, labels: ids, returnLogits: false }).loss!;
  want.backward();
  const model = tiny(tied);
  const zero = new ZeroStage3(group([0]), model, decayParamGroups(model, 0.01));
  const q = model.model.layers[0].self_attn.q_proj!;
  assert.ok(k.isMeta(q.weight), 'a partitioned layer holds a placeholder');
  assert.throws(() => q.forward(k.zeros([1, 16], { backend: 'cpu' })), /parameter 'model\.layers\.0\.self_attn\.q_proj\.weight' \[16, 16\] float32 is a meta tensor/);
  const params = model.parameters().filter((p) => p.requiresGrad);
  zero.arm(params);
  assert.ok(k.isMeta(model.model.embed_tokens.weight) && k.isMeta(model.model.norm.weight), 'the embeddings and the final norm are partitioned too');
  const got = model.forward({ inputIds: ids, labels: ids, returnLogits: false }).loss!;
  got.backward();
  assert.equal(got.item(), want.item(), 'loss');
  assert.ok(k.isMeta(q.weight) && k.isMeta(model.model.embed_tokens.weight), 'released again after backward');
  return zero.finish(params).then(() => {
    // every shard's gradient is its parameters' plain gradients end to end (one rank: the whole arena)
    const plainGrads = new Map(plain.namedParameters().map(([n, p]) => [n, p.grad!.toFloat32Array()]));
    const shards = zero.shardGroups.flatMap((g) => g.params);
    const layout = zero.shardLayout();
    const names = new Map(model.namedParameters().map(([n, p]) => [p, n]));
    layout.groups.forEach((g, i) => {
      const grad = shards[i].grad!.toFloat32Array();
      for (const piece of g.pieces)
        assertClose(grad.subarray(piece.at, piece.at + piece.length), plainGrads.get(names.get(piece.param)!)!.subarray(piece.start, piece.start + piece.length), { atol: 1e-6, rtol: 1e-5, what: names.get(piece.param) });
    });
    model.dispose();
    plain.dispose();
  });
});

test('ZeRO-3 refusals: a transport without blocking starts, a parameter shared by two layers', () => {
  const model = tiny();
  assert.throws(() => new ZeroStage3(group([0, 1]), model, decayParamGroups(model, 0.01)), /ZeRO stage 3 gathers parameters inside the synchronous forward and needs a transport that starts calls there/);
  model.model.layers[1].self_attn.o_proj.weight = model.model.layers[0].self_attn.o_proj.weight;
  assert.throws(() => findUnits(model, 0), /parameter 'model\.layers\.1\.self_attn\.o_proj\.weight' is shared by model\.layers\.0 and model\.layers\.1; a parameter may belong to one unit only/);
});
