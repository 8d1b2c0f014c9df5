// Block-sparse attention in the decoder (src/models/sparse_attention.ts): a 'dense' layout gives the
// dense model's logits; a local + global layout changes only the tokens whose dense window it cuts;
// prefill + KV-cache decode equals the full forward (the decode rule); right padding is dropped
// exactly; `kestrel train --attention-sparsity` trains (the loss falls), saves sparsity.json beside
// the model, and a run from the saved folder reuses the layout.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as k from '../../src/index.js';
import { loadCausalLM } from '../../src/models/load.js';
import { KVCache } from '../../src/models/kv_cache.js';
import { decoderConfig } from '../../src/models/registry.js';
import { attentionSparsity, setAttentionSparsity } from '../../src/models/sparse_attention.js';
import { assertClose, runCli, tinyTrainDir } from '../helpers.js';
import { TINY } from './tiny_llama.js';

const T = 24;
const ids = Array.from({ length: T }, (_, t) => (t * 7 + 3) % 64);
// blocks of 4: each block sees itself and block 0 (global), causally
const LOCAL_GLOBAL = k.parseSparsityConfig({ mode: 'bslongformer', block: 4, num_sliding_window_blocks: 1, global_block_indices: [0], attention: 'unidirectional' });

function tiny(): k.CausalLM {
  return new k.CausalLM(decoderConfig(TINY, 'tiny config'), { generator: new k.Generator(3) });
}

function logits(model: k.CausalLM, rows: number[][], mask?: number[][]): Float32Array {
  return k.tidy(() => k.noGrad(() => {
    const out = model.forward({
      inputIds: k.tensor(rows, { dtype: 'int64' }),
      attentionMask: mask ? k.tensor(mask, { dtype: 'int64' }) : null,
    });
    return out.logits!.toFloat32Array();
  }));
}

const V = TINY.vocab_size;
const row = (l: Float32Array, t: number, b = 0, len = T): Float32Array => l.subarray((b * len + t) * V, (b * len + t + 1) * V);

test("a 'dense' layout gives the dense model's logits", () => {
  const model = tiny();
  const dense = logits(model, [ids]);
  setAttentionSparsity(model, k.parseSparsityConfig({ mode: 'dense', block: 8 }));
  assertClose(logits(model, [ids]), dense, { atol: 2e-5, rtol: 1e-4 });
  model.dispose();
});

test('a local + global layout keeps the first two blocks and changes the later tokens', () => {
  const model = tiny();
  const dense = logits(model, [ids]);
  setAttentionSparsity(model, LOCAL_GLOBAL);
  const sparse = logits(model, [ids]);
  // tokens 0..7 (blocks 0 and 1) see every earlier token under both
  assertClose(sparse.subarray(0, 8 * V), dense.subarray(0, 8 * V), { atol: 2e-5, rtol: 1e-4 });
  const diff = Math.max(...row(sparse, T - 1).map((x, i) => Math.abs(x - row(dense, T - 1)[i])));
  assert.ok(diff > 1e-4, `the last token attends 8 of 24 keys, its logits must move (max change ${diff})`);
  model.dispose();
});

test('prefill then KV-cache decode equals the full forward (each new row uses its layout row)', () => {
  const model = tiny();
  setAttentionSparsity(model, LOCAL_GLOBAL);
  const full = logits(model, [ids]);
  const c = model.config;
  const cache = new KVCache(c.numLayers, 1, c.numKvHeads, T, c.headDim);
  const step = (toks: number[]): Float32Array => k.tidy(() => k.noGrad(() =>
    model.forward({ inputIds: k.tensor([toks], { dtype: 'int64' }), cache }).logits!.toFloat32Array()));
  const prefill = step(ids.slice(0, 18));
  assertClose(prefill.subarray(17 * V), row(full, 17), { atol: 2e-5, rtol: 1e-4, what: 'prefill last row' });
  for (let t = 18; t < T; t++) assertClose(step([ids[t]]), row(full, t), { atol: 2e-5, rtol: 1e-4, what: `decode position ${t}` });
  cache.dispose();
  model.dispose();
});

test('right padding changes no real token (the mask is dropped); left padding runs the masked dense path', () => {
  const model = tiny();
  setAttentionSparsity(model, LOCAL_GLOBAL);
  const alone = logits(model, [ids.slice(0, 20)]);
  const padded = logits(model, [ids.slice(0, 20).concat([0, 0, 0, 0]), ids], [new Array(20).fill(1).concat([0, 0, 0, 0]), new Array(T).fill(1)]);
  assertClose(padded.subarray(0, 20 * V), alone, { atol: 2e-5, rtol: 1e-4, what: 'right-padded row' });
  assertClose(padded.subarray(T * V), logits(model, [ids]), { atol: 2e-5, rtol: 1e-4, what: 'unpadded row of the batch' });
  // left padding: the layout still applies (dense attention with the layout and padding masks together)
  const left = logits(model, [[0, 0, 0, 0].concat(ids.slice(0, 20)), ids], [[0, 0, 0, 0].concat(new Array(20).fill(1)), new Array(T).fill(1)]);
  assertClose(left.subarray(T * V), logits(model, [ids]), { atol: 2e-5, rtol: 1e-4, what: 'the unpadded row beside a left-padded one' });
  model.dispose();
});

test('activation checkpointing (full, selective) recomputes the sparse layers to the same gradients', () => {
  const grads = (mode: 'none' | 'full' | 'selective'): Float32Array[] => {
    const model = tiny();
    setAttentionSparsity(model, LOCAL_GLOBAL);
    model.checkpointing = mode;
    k.tidy(() => {
      const input = k.tensor([ids], { dtype: 'int64' });
      model.forward({ inputIds: input, labels: input }).loss!.backward();
    });
    const g = model.parameters().map((p) => p.grad!.toFloat32Array());
    model.dispose();
    return g;
  };
  const plain = grads('none');
  for (const mode of ['full', 'selective'] as const)
    grads(mode).forEach((g, i) => assertClose(g, plain[i], { atol: 1e-6, rtol: 1e-4, what: `${mode}: parameter ${i}` }));
});

test('kestrel train --attention-sparsity: the loss falls, sparsity.json is saved, and a run from the saved model reuses it', async () => {
  const dir = tinyTrainDir('kestrel-sparse-train-');
  const spec = { mode: 'bslongformer', block: 2, num_sliding_window_blocks: 1, global_block_indices: [0], attention: 'unidirectional' };
  writeFileSync(join(dir, 'sparsity.in.json'), JSON.stringify(spec));
  const out = join(dir, 'out');
  const base = ['--data', join(dir, 'train.jsonl'), '--seq-len', '10', '--batch-size', '4', '--lr', '0.01', '--schedule', 'constant', '--quiet'];
  let r = runCli(['train', '--model', join(dir, 'config.json'), '--output', out, '--max-steps', '30', '--save-every', '15', '--attention-sparsity', join(dir, 'sparsity.in.json'), ...base]);
  assert.equal(r.status, 0, r.stderr);
  const losses = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).loss as number);
  assert.ok(losses.at(-1)! < 0.6 * losses[0], `loss ${losses[0]} -> ${losses.at(-1)} must fall`);
  const saved = JSON.parse(readFileSync(join(out, 'sparsity.json'), 'utf8'));
  assert.deepEqual(saved, k.parseSparsityConfig(spec), 'the whole config, defaults filled in');
  const { model } = await loadCausalLM(out);
  assert.deepEqual(attentionSparsity(model as k.CausalLM), saved, 'loading the folder applies sparsity.json');
  model.dispose();
  const again = join(dir, 'again');
  r = runCli(['train', '--model', out, '--output', again, '--max-steps', '2', ...base]);
  assert.equal(r.status, 0, r.stderr);
  assert.ok(existsSync(join(again, 'sparsity.json')), 'training from the saved model keeps its layout');
  // resuming a checkpoint without the flag takes the checkpoint's sparsity.json
  const resumed = join(dir, 'resumed');
  r = runCli(['train', '--model', join(dir, 'config.json'), '--output', resumed, '--resume', join(out, 'checkpoint-30'), '--max-steps', '31', ...base]);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(readFileSync(join(resumed, 'sparsity.json'), 'utf8')), saved, 'the resumed run kept the layout');
  writeFileSync(join(dir, 'other.json'), JSON.stringify({ ...spec, num_sliding_window_blocks: 3 }));
  r = runCli(['train', '--model', join(dir, 'config.json'), '--output', join(dir, 'other'), '--resume', join(out, 'checkpoint-30'), '--max-steps', '31', '--attention-sparsity', join(dir, 'other.json'), ...base]);
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /checkpoint-30\/sparsity\.json: the checkpoint trained with sparse attention .* resume with the same --attention-sparsity/);
  writeFileSync(join(dir, 'bad.json'), JSON.stringify({ mode: 'strided', block: 4 }));
  const bad = runCli(['train', '--model', join(dir, 'config.json'), '--output', join(dir, 'bad'), '--attention-sparsity', join(dir, 'bad.json'), ...base]);
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /bad\.json\.mode must be one of dense, fixed, variable, bigbird, bslongformer, local_sliding_window, got "strided"/);
});
