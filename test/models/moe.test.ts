// The grouped MoE block against the per-expert loop it replaces (forward and every gradient, in
// float64 on the reference backend and float32 on the cpu backend), on small random Mixtral and
// Qwen2-MoE configs: odd sizes, top-3, normalised top-k, a shared expert, dense layers between MoE
// layers (mlp_only_layers / decoder_sparse_step), capacity dropping and router jitter. Routing and
// capacity are checked on hand-worked examples.
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';
import type { Json } from '../../src/models/families/hf_config.js';
import { SparseMoe } from '../../src/models/moe.js';
import { route, sortSlots } from '../../src/models/moe_routing.js';
import { ownedExperts } from '../../src/models/moe_expert_parallel.js';
import { decoderConfig } from '../../src/models/registry.js';
import { loadPretrained, savePretrained } from '../../src/models/load.js';
import { assertClose, hasCpu, seededTensor } from '../helpers.js';

/** A small random Qwen2-MoE config.json (odd sizes unless overridden). */
const qwenMoe = (over: Json = {}): Json => ({
  model_type: 'qwen2_moe', vocab_size: 37, hidden_size: 24, intermediate_size: 40, num_hidden_layers: 3, num_attention_heads: 4,
  num_key_value_heads: 2, num_experts: 5, num_experts_per_tok: 3, moe_intermediate_size: 13, shared_expert_intermediate_size: 11,
  norm_topk_prob: true, decoder_sparse_step: 1, mlp_only_layers: [1], router_aux_loss_coef: 0.02, output_router_logits: true,
  rms_norm_eps: 1e-6, initializer_range: 0.3, ...over,
});
const mixtral = (over: Json = {}): Json => ({
  model_type: 'mixtral', vocab_size: 37, hidden_size: 16, intermediate_size: 9, num_hidden_layers: 2, num_attention_heads: 4,
  num_key_value_heads: 2, num_local_experts: 4, num_experts_per_tok: 2, rms_norm_eps: 1e-6, initializer_range: 0.3, ...over,
});

const sparseBlocks = (m: k.CausalLM): SparseMoe[] => m.model.layers.map((l) => l.sparseBlock()).filter((b): b is SparseMoe => b !== null);

/** Loss and every gradient of the model on fixed ids, with the blocks grouped or looping. */
function lossAndGrads(m: k.CausalLM, loop: boolean, backend: k.BackendName): { loss: number; logits: k.Tensor; grads: Map<string, k.Tensor> } {
  for (const b of sparseBlocks(m)) b.loop = loop;
  for (const p of m.parameters()) p.zeroGrad();
  const ids = k.tensor([[1, 5, 9, 33, 2, 7, 7, 30, 11], [4, 0, 8, 16, 23, 35, 6, 1, 3]], { dtype: 'int64', backend });
  const mask = k.tensor([[1, 1, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1, 0, 0]], { dtype: 'int64', backend });
  const out = m.forward({ inputIds: ids, attentionMask: mask, labels: ids });
  out.loss!.backward();
  return { loss: out.loss!.item(), logits: k.keep(out.logits!), grads: new Map(m.namedParameters().map(([n, p]) => [n, k.keep(k.clone(p.grad!))])) };
}

function groupedEqualsLoop(raw: Json, backend: k.BackendName, dtype: k.DType, tol: number): void {
  const m = new k.CausalLM(decoderConfig(raw, 'test config'), { generator: new k.Generator(3), backend, dtype });
  k.tidy(() => {
    const loop = lossAndGrads(m, true, backend);
    const grouped = lossAndGrads(m, false, backend);
    assertClose([grouped.loss], [loop.loss], { atol: tol, rtol: tol, what: 'loss' });
    assertClose(grouped.logits, loop.logits, { atol: tol, rtol: tol, what: 'logits' });
    for (const [n, g] of loop.grads) assertClose(grouped.grads.get(n)!, g, { atol: tol, rtol: tol, what: `grad ${n}` });
  });
  m.dispose();
}

describe('grouped MoE equals the per-expert loop', () => {
  const configs: [string, Json][] = [
    ['qwen2_moe: top-3 of 5, normalised, shared expert, layer 1 dense', qwenMoe()],
    ['qwen2_moe: top-2 not normalised, decoder_sparse_step 2 (layers 0 and 2 dense)', qwenMoe({ num_experts_per_tok: 2, norm_topk_prob: false, decoder_sparse_step: 2, mlp_only_layers: [] })],
    ['qwen2_moe: top-k then softmax, capacity factor 0.6 (drops slots)', qwenMoe({ moe_routing: 'topk_softmax', capacity_factor: 0.6 })],
    ['mixtral: 4 experts, top-2', mixtral()],
  ];
  for (const [what, raw] of configs) {
    test(`${what} (ref, float64, every gradient)`, () => groupedEqualsLoop(raw, 'ref', 'float64', 1e-12));
    test(`${what} (cpu, float32, every gradient)`, { skip: hasCpu() ? false : 'cpu addon not built' }, () => groupedEqualsLoop(raw, 'cpu', 'float32', 2e-6));
  }

  // Under autocast the grouped path rounds gate and up to bf16 (as the loop's Linears do) but keeps
  // the down projection's float32 sums and float32 weight gradients; the loop also rounds its down
  // output and every weight gradient to bf16 (2^-9 relative each, through three chained Linears):
  // the two agree within a few 2^-8 of each gradient's scale.
  test('under bf16 autocast (cpu): grouped and loop give the same loss and gradients within bf16 rounding', { skip: hasCpu() ? false : 'cpu addon not built' }, () => {
    const m = new k.CausalLM(decoderConfig(qwenMoe(), 'c'), { generator: new k.Generator(3), backend: 'cpu' });
    k.tidy(() => {
      const loop = k.autocast('bfloat16', () => lossAndGrads(m, true, 'cpu'));
      const grouped = k.autocast('bfloat16', () => lossAndGrads(m, false, 'cpu'));
      assertClose([grouped.loss], [loop.loss], { atol: 1e-3, rtol: 1e-3, what: 'loss' });
      for (const [n, g] of loop.grads) {
        const scale = g.toFloat32Array().reduce((a, x) => Math.max(a, Math.abs(x)), 0);
        assertClose(grouped.grads.get(n)!, g, { atol: 4e-2 * scale, rtol: 4e-2, what: `grad ${n}` });
      }
    });
    m.dispose();
  });

  // What forward leaves for backward under bf16 autocast, in bytes, with S slots, F ffn, D dim, E
  // experts, N tokens: gate and up (saved by SiLU*up) and h (saved by down) are bf16, 6·S·F in all;
  // the rest is D-sized (sorted rows, down's float32 output, the bf16 weight copies, the output).
  // Float32 gate/up plus a bf16 copy of h, as before halfOut, would be 10·S·F: the bound 8·S·F
  // separates the two with room for the D-sized terms (about S·F here).
  test('under bf16 autocast (cpu) the block keeps its [slots, ffn] activations in bf16 for backward', { skip: hasCpu() ? false : 'cpu addon not built' }, () => {
    const [N, D, F, E] = [150, 8, 160, 4];
    const c = decoderConfig(mixtral({ hidden_size: D, intermediate_size: F, num_local_experts: E, num_experts_per_tok: 2 }), 'c');
    const block = new SparseMoe(c, { generator: new k.Generator(5), backend: 'cpu' });
    const x = seededTensor([1, N, D], 'float32', 'cpu', 4).requiresGrad_();
    const S = 2 * N;
    const base = k.memory.stats().current.total;
    const { out, routerLogits } = k.autocast('bfloat16', () => block.forward(x));
    const held = k.memory.stats().current.total - base;
    assert.ok(held > 6 * S * F && held < 8 * S * F, `held ${held} bytes: want between 6·S·F = ${6 * S * F} and 8·S·F = ${8 * S * F}`);
    k.tidy(() => out.sum().backward());
    assert.equal(x.grad!.dtype, 'float32');
    for (const t of [out, routerLogits, x]) t.dispose();
    block.dispose();
  });

  test('save -> load in HF keys round-trips a config with dense layers, bit for bit', async () => {
    const raw = qwenMoe({ decoder_sparse_step: 2, mlp_only_layers: [], num_hidden_layers: 3 });
    const model = new k.CausalLM(decoderConfig(raw, 'c'), { generator: new k.Generator(9) });
    const dir = mkdtempSync(join(tmpdir(), 'kestrel-qwen2moe-'));
    savePretrained(dir, { model, hfConfig: raw });
    const back = await loadPretrained(dir);
    const a = model.stateDict();
    const b = back.model.stateDict();
    assert.deepEqual(Object.keys(b).sort(), Object.keys(a).sort());
    assert.ok(Object.keys(a).includes('model.layers.1.mlp.experts.4.up_proj.weight') && Object.keys(a).includes('model.layers.2.mlp.up_proj.weight'));
    for (const [n, t] of Object.entries(b)) assert.deepEqual(t.toTypedArray(), a[n].toTypedArray(), n);
    model.dispose();
    back.model.dispose();
  });

  test('dense layers are plain MLPs under `mlp`, sparse ones carry experts and the shared expert', () => {
    const m = new k.CausalLM(decoderConfig(qwenMoe({ decoder_sparse_step: 2, mlp_only_layers: [2], num_hidden_layers: 4 }), 'c'), { backend: 'meta' });
    const keys = Object.keys(m.stateDict());
    // sparse: (i + 1) % 2 == 0 and i not in [2] -> layers 1 and 3
    for (const i of [0, 2]) assert.ok(keys.includes(`model.layers.${i}.mlp.gate_proj.weight`), `layer ${i} dense`);
    for (const i of [1, 3]) {
      for (const n of ['mlp.gate.weight', 'mlp.experts.4.down_proj.weight', 'mlp.shared_expert.up_proj.weight', 'mlp.shared_expert_gate.weight'])
        assert.ok(keys.includes(`model.layers.${i}.${n}`), `layer ${i} ${n}`);
    }
    assert.equal(sparseBlocks(m).length, 2);
  });
});

describe('routing by hand', () => {
  // logits of 2 tokens over 4 experts; probabilities p = softmax(row)
  const logits = [[2, 0, 1, -1], [0, 3, 0.5, 3]];
  const soft = (r: number[]): number[] => r.map((x) => Math.exp(x) / r.reduce((s, y) => s + Math.exp(y), 0));
  const l = (): k.Tensor => k.tensor(logits, { dtype: 'float64', backend: 'ref' });

  test('softmax then top-2: the two largest probabilities, renormalised or not; ties to the lower index', () => {
    k.tidy(() => {
      const p = logits.map(soft);
      const raw = route(l(), { topK: 2, order: 'softmax_topk', normTopkProb: false, capacityFactor: 0 });
      assert.deepEqual(raw.experts.map((r) => [...r]), [[0, 2], [1, 3]]); // token 1: experts 1 and 3 tie at 3 -> 1 first
      assertClose(raw.weights, [p[0][0], p[0][2], p[1][1], p[1][3]], { atol: 1e-15, rtol: 1e-12 });
      const norm = route(l(), { topK: 2, order: 'softmax_topk', normTopkProb: true, capacityFactor: 0 });
      assertClose(norm.weights, [p[0][0] / (p[0][0] + p[0][2]), p[0][2] / (p[0][0] + p[0][2]), 0.5, 0.5], { atol: 1e-15, rtol: 1e-12 });
    });
  });

  test('top-2 then softmax: softmax over the two chosen logits only', () => {
    k.tidy(() => {
      const r = route(l(), { topK: 2, order: 'topk_softmax', normTopkProb: false, capacityFactor: 0 });
      const [a, b] = soft([2, 1]);
      assertClose(r.weights, [a, b, 0.5, 0.5], { atol: 1e-15, rtol: 1e-12 });
    });
  });

  test('the sorted slots: grouped by expert, token order inside, offsets per expert', () => {
    // token n's choices: 0 -> (2, 0), 1 -> (0, 1), 2 -> (2, 1)
    const s = sortSlots([Int32Array.from([2, 0]), Int32Array.from([0, 1]), Int32Array.from([2, 1])], 4, Infinity);
    // expert 0: slots 1 (token 0, choice 1), 2 (token 1, choice 0); expert 1: 3, 5; expert 2: 0, 4; expert 3: none
    assert.deepEqual(s.slotIndex, [1, 2, 3, 5, 0, 4]);
    assert.deepEqual(s.tokenOfSlot, [0, 1, 1, 2, 0, 2]);
    assert.deepEqual(s.offsets, [0, 2, 4, 6, 6]);
    assert.deepEqual(s.chosen, [2, 2, 2, 0]);
    assert.equal(s.dropped, 0);
  });

  test('top-k and the slot sort equal their definitions (a stable sort per row; slots bucketed by expert) on tie-heavy rows', () => {
    // the definitions: indices sorted by value descending, lower index first on ties; each expert's
    // kept slots in increasing flat order n * k + s; first choices admitted before second choices
    for (let trial = 0; trial < 60; trial++) {
      const [N, E] = [1 + ((trial * 7) % 23), 1 + (trial % 9)];
      const topK = 1 + (trial % E);
      const capacity = trial % 3 === 0 ? Infinity : Math.ceil((0.7 * N * topK) / E);
      const rows = Array.from({ length: N }, (_, n) => Array.from({ length: E }, (_, e) => (((n * E + e) * 2654435761 + trial * 97) >>> 0) % 4));
      const want = rows.map((r) => [...r.keys()].sort((a, b) => r[b] - r[a] || a - b).slice(0, topK));
      const r = k.tidy(() => route(k.tensor(rows, { dtype: 'float64', backend: 'ref' }), { topK, order: 'topk_softmax', normTopkProb: false, capacityFactor: 0 }));
      assert.deepEqual(r.experts.map((x) => [...x]), want, `trial ${trial}: top-${topK} of ${E}`);
      const load = new Array<number>(E).fill(0);
      const keep = want.map((c) => c.map(() => false));
      for (let s = 0; s < topK; s++) want.forEach((c, n) => (keep[n][s] = load[c[s]]++ < capacity));
      const groups = Array.from({ length: E }, (_, e) => want.flatMap((c, n) => c.map((x, s) => (x === e && keep[n][s] ? n * topK + s : -1))).filter((i) => i >= 0).sort((a, b) => a - b));
      const got = sortSlots(want.map((c) => Int32Array.from(c)), E, capacity);
      assert.deepEqual(got.slotIndex, groups.flat(), `trial ${trial}: slots`);
      assert.deepEqual(got.tokenOfSlot, groups.flat().map((i) => Math.floor(i / topK)), `trial ${trial}: tokens`);
      assert.deepEqual(got.offsets, groups.reduce((o, g) => [...o, o[o.length - 1] + g.length], [0]), `trial ${trial}: offsets`);
      assert.deepEqual(got.chosen, load, `trial ${trial}: chosen`);
    }
  });

  test('capacity dropping: first choices are admitted before second choices, each in token order', () => {
    // 4 tokens, top-2 over 2 experts, capacity factor 0.5 -> ceil(0.5 * 4 * 2 / 2) = 2 slots per expert.
    // choices: t0 (0, 1), t1 (0, 1), t2 (0, 1), t3 (1, 0)
    // first choices: expert 0 gets t0, t1 (t2 dropped: full), expert 1 gets t3;
    // second choices: expert 1 gets t0 (now full), t1 and t2 dropped; t3's second choice (expert 0) dropped.
    const r = k.tidy(() => route(k.tensor([[3, 1], [3, 1], [3, 1], [1, 3]], { dtype: 'float64', backend: 'ref' }), { topK: 2, order: 'softmax_topk', normTopkProb: false, capacityFactor: 0.5 }));
    assert.deepEqual(r.slotIndex, [0, 2, 1, 6]); // expert 0: (t0,s0)=0, (t1,s0)=2; expert 1: (t0,s1)=1, (t3,s0)=6
    assert.deepEqual(r.offsets, [0, 2, 4]);
    assert.deepEqual(r.chosen, [4, 4]);
    assert.equal(r.dropped, 4);
  });

  test('a dropped slot contributes nothing: the block output of a fully dropped token is zero', () => {
    k.tidy(() => {
      const c = decoderConfig(mixtral({ num_local_experts: 2, num_experts_per_tok: 1, capacity_factor: 0.5 }), 'c');
      const m = new k.CausalLM(c, { generator: new k.Generator(1), backend: 'ref', dtype: 'float64' });
      const block = sparseBlocks(m)[0];
      // 4 tokens, capacity ceil(0.5 * 4 / 2) = 1 per expert: at most 2 tokens get an expert
      const x = seededTensor([1, 4, 16], 'float64', 'ref', 4);
      const { out } = block.forward(x);
      const rows = (out.toArray() as number[][][])[0].map((r) => r.some((v) => v !== 0));
      assert.equal(rows.filter(Boolean).length, 2 - block.lastLoad!.chosen.filter((n) => n === 0).length);
      assert.equal(block.lastLoad!.dropped, 4 - rows.filter(Boolean).length);
      m.dispose();
    });
  });

  test('router jitter scales the input only in training', () => {
    k.tidy(() => {
      const m = new k.CausalLM(decoderConfig(mixtral({ router_jitter_noise: 0.5 }), 'c'), { generator: new k.Generator(1), backend: 'ref', dtype: 'float64' });
      const block = sparseBlocks(m)[0];
      const x = seededTensor([1, 5, 16], 'float64', 'ref', 4);
      block.train(false);
      const a = block.forward(x).routerLogits;
      const clean = block.gate.forward(k.reshape(x, [5, 16]));
      assertClose(a, clean, { atol: 0, rtol: 0, what: 'eval: no jitter' });
      block.train(true);
      const b = block.forward(x).routerLogits;
      assert.ok(b.sub(clean).abs().max().item() > 1e-3, 'training: jittered');
      m.dispose();
    });
  });
});

describe('bad MoE input is named', () => {
  test('config fields', () => {
    assert.throws(() => decoderConfig(qwenMoe({ moe_routing: 'top1' }), 'm/config.json'), /m\/config.json: field 'moe_routing' must be one of softmax_topk, topk_softmax, got "top1"/);
    assert.throws(() => decoderConfig(qwenMoe({ capacity_factor: -1 }), 'm/config.json'), /field 'capacity_factor' must be >= 0 \(0 = dropless\), got -1/);
    assert.throws(() => decoderConfig(qwenMoe({ mlp_only_layers: [0.5] }), 'm/config.json'), /field 'mlp_only_layers' must be a list of layer indices, got \[0.5\]/);
    assert.throws(() => decoderConfig(qwenMoe({ num_experts_per_tok: 6 }), 'm/config.json'), /num_experts_per_tok/);
  });

  test('routing and expert-parallel arguments', () => {
    k.tidy(() => {
      assert.throws(() => route(k.zeros([2, 3, 4]), { topK: 1, order: 'softmax_topk', normTopkProb: false, capacityFactor: 0 }), /router logits must be \[tokens, experts\], got \[2, 3, 4\]/);
      assert.throws(() => route(k.zeros([2, 4]), { topK: 5, order: 'softmax_topk', normTopkProb: false, capacityFactor: 0 }), /top-k 5 must be in 1..4/);
    });
    assert.throws(() => ownedExperts(6, { rank: 0, size: 4 }), /6 experts do not split evenly over 4 ranks/);
    assert.deepEqual(ownedExperts(8, { rank: 3, size: 4 }), { first: 6, count: 2 });
  });
});

