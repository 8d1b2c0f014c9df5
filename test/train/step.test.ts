// Gradient accumulation: N micro-batches equal one batch of all their rows (1e-5), with the loss
// normalised over every target token of the accumulated batch; and a small model learns a task.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { decoderConfig } from '../../src/models/registry.js';
import { assertClose } from '../helpers.js';
import { batchInputs } from '../../src/train/step.js';

const config = decoderConfig({
  model_type: 'llama', vocab_size: 16, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2,
  num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64,
}, 'test config');

function batch(rows: number[][], pad: number[]): k.data.Batch {
  // right padding of `pad[i]` tokens, masked and ignored
  return {
    inputIds: rows.map((r, i) => r.map((x, t) => (t < r.length - pad[i] ? x : 0))),
    labels: rows.map((r, i) => r.map((x, t) => (t < r.length - pad[i] ? x : -100))),
    attentionMask: rows.map((r, i) => r.map((_, t) => (t < r.length - pad[i] ? 1 : 0))),
  };
}

test('accumulating micro-batches equals one batch, with uneven token counts', () => {
  const rows = Array.from({ length: 4 }, (_, i) => Array.from({ length: 10 }, (_, t) => (i * 7 + t * 3) % 16));
  const pads = [0, 4, 1, 6];
  const grads = (parts: number[][]) => {
    k.manualSeed(2);
    const model = new k.CausalLM(config);
    const { loss } = k.train.accumulateGradients(model, parts.map((idx) => batch(idx.map((i) => rows[i]), idx.map((i) => pads[i]))));
    const g = model.parameters().map((p) => p.grad!.toFloat32Array());
    model.dispose();
    return { loss, g };
  };
  const whole = grads([[0, 1, 2, 3]]);
  const split = grads([[0, 1], [2, 3]]);
  const ones = grads([[0], [1], [2], [3]]);
  for (const other of [split, ones]) {
    assertClose([other.loss], [whole.loss], { atol: 1e-6, rtol: 1e-6, what: 'loss' });
    other.g.forEach((g, i) => assertClose(g, whole.g[i], { atol: 1e-5, rtol: 1e-5, what: `grad ${i}` }));
  }
  assert.equal(k.train.targetTokens(batch([rows[1]], [4])), 5);
});

test('loss falls on a learnable task (AdamW, cosine schedule, clipping)', () => {
  k.manualSeed(3);
  const model = new k.CausalLM(config).train();
  const opt = new k.optim.AdamW(model.parameters(), { lr: 3e-3, weightDecay: 0 });
  const lr = k.optim.schedules.cosine(3e-3, 5, 60);
  // next token = (token + 1) mod 16: learnable from the previous token alone
  const seqs = Array.from({ length: 8 }, (_, i) => Array.from({ length: 12 }, (_, t) => (i + t) % 16));
  const losses: number[] = [];
  for (let step = 0; step < 60; step++) {
    opt.setLr(lr(step));
    const { loss } = k.train.accumulateGradients(model, [batch(seqs, seqs.map(() => 0))]);
    k.optim.clipGradNorm(model.parameters(), 1);
    opt.step();
    opt.zeroGrad();
    losses.push(loss);
  }
  assert.ok(losses[0] > 2 && losses.at(-1)! < losses[0] / 4, `loss ${losses[0]} -> ${losses.at(-1)}`);
  opt.dispose();
  model.dispose();
});

test('packed rows: with documentIds and restarted positions, each document is computed as if alone', () => {
  k.manualSeed(4);
  const model = new k.CausalLM(config).eval();
  const docA = [3, 5, 7, 9];
  const docB = [2, 4, 6];
  const logitsOf = (ids: number[], pos: number[], docs?: number[]) =>
    k.tidy(() => model.forward({
      inputIds: k.tensor([ids], { dtype: 'int64' }),
      positionIds: k.tensor([pos], { dtype: 'int64' }),
      documentIds: docs ? k.tensor([docs], { dtype: 'int64' }) : null,
    }).logits!.toFloat32Array());
  const packed = logitsOf([...docA, ...docB], [0, 1, 2, 3, 0, 1, 2], [0, 0, 0, 0, 1, 1, 1]);
  const alone = logitsOf(docB, [0, 1, 2]);
  assertClose(packed.subarray(4 * 16), alone, { atol: 1e-5, rtol: 1e-5, what: 'second document' });
  model.dispose();
});

test('decay groups: matrices decay; norms, biases and embeddings do not', () => {
  const model = new k.CausalLM(config);
  const [decay, none] = k.train.decayParamGroups<{ weightDecay: number }>(model, 0.1);
  const names = new Map(model.namedParameters().map(([n, p]) => [p, n]));
  assert.ok(decay.params.every((p) => p.ndim === 2 && !names.get(p)!.includes('embed')));
  assert.ok(none.params.some((p) => names.get(p) === 'model.embed_tokens.weight') && none.params.some((p) => names.get(p)!.endsWith('norm.weight')));
  assert.equal(decay.params.length + none.params.length, model.parameters().length);
  assert.deepEqual([decay.options?.weightDecay, none.options?.weightDecay], [0.1, 0]);
  model.dispose();
});

test('the step loss (returnLogits: false) equals the logits path: untied, tied, frozen head, LoRA-wrapped head', () => {
  const rows = Array.from({ length: 3 }, (_, i) => Array.from({ length: 9 }, (_, t) => (i * 5 + t * 3) % 16));
  const inputs = batchInputs(batch(rows, [0, 3, 1]));
  // a LoRA head must not take the fused path: its lora_B would get no gradient there (and lora_A none either way)
  const variants: [string, (m: k.CausalLM) => void][] = [
    ['untied', () => {}],
    ['tied', () => {}],
    ['frozen head (QLoRA-style: only the body trains)', (m) => m.lm_head!.weight.requiresGrad_(false)],
    ['LoRA on lm_head (falls back to the logits path)', (m) => k.lora.injectLora(m, { targetModules: ['lm_head', 'q_proj'], r: 2, alpha: 4 })],
  ];
  for (const [name, prepare] of variants) {
    const run = (returnLogits: boolean) => {
      k.manualSeed(4);
      const model = new k.CausalLM(name === 'tied' ? { ...config, tieWordEmbeddings: true } : config);
      prepare(model);
      const res = k.tidy(() => {
        const out = model.forward({ ...inputs, lossReduction: 'sum', returnLogits });
        out.loss!.div(7).backward();
        return { loss: out.loss!.item(), logits: out.logits === null };
      });
      const g = model.parameters().filter((p) => p.requiresGrad).map((p) => p.grad!.toFloat32Array());
      model.dispose();
      return { ...res, g };
    };
    const plain = run(true);
    const chunked = run(false);
    assert.ok(chunked.logits && !plain.logits, `${name}: logits returned only when asked for`);
    assertClose([chunked.loss], [plain.loss], { atol: 1e-6, rtol: 1e-6, what: `${name} loss` });
    assert.equal(chunked.g.length, plain.g.length);
    chunked.g.forEach((g, i) => assertClose(g, plain.g[i], { atol: 1e-6, rtol: 1e-5, what: `${name} grad ${i}` }));
  }
});
