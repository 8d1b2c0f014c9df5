// The router losses against their formulas computed here in plain float64 on fixed logits:
// transformers' load_balancing_loss_func (with and without the attention mask) and ST-MoE's z-loss;
// their gradients by finite differences; and how CausalLM adds them to the loss (router_aux_loss_coef
// when output_router_logits, router_z_loss_coef).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';
import { loadBalancingLoss, routerZLoss } from '../../src/models/moe_losses.js';
import { decoderConfig } from '../../src/models/registry.js';
import { assertClose, gradcheck, seeded } from '../helpers.js';

k.setDefaultBackend('ref');

// 2 layers x (B 2, T 3) tokens, 4 experts, fixed logits
const L = 2;
const N = 6;
const E = 4;
const raw = Array.from(seeded(L * N * E, 7, -2, 2));
const layerLogits = (l: number): number[][] => Array.from({ length: N }, (_, n) => raw.slice((l * N + n) * E, (l * N + n + 1) * E));
const mask = [[1, 1, 0], [1, 1, 1]];

/** load_balancing_loss_func written out: E * sum_{s,e} f[s][e] * P[e] over the counted tokens of every layer. */
function balancingFormula(k: number, m: number[][] | null): number {
  const f = Array.from({ length: k }, () => new Array<number>(E).fill(0));
  const P = new Array<number>(E).fill(0);
  let counted = 0;
  for (let l = 0; l < L; l++)
    layerLogits(l).forEach((row, n) => {
      const w = m ? m[Math.floor(n / 3)][n % 3] : 1;
      const z = row.reduce((s, x) => s + Math.exp(x), 0);
      const p = row.map((x) => Math.exp(x) / z);
      const order = [...p.keys()].sort((a, b) => p[b] - p[a] || a - b);
      for (let s = 0; s < k; s++) f[s][order[s]] += w;
      p.forEach((v, e) => (P[e] += w * v));
      counted += w;
    });
  let sum = 0;
  for (let s = 0; s < k; s++) for (let e = 0; e < E; e++) sum += (f[s][e] / counted) * (P[e] / counted);
  return E * sum;
}

/** mean over counted tokens of (log sum_e exp x_e)^2 */
function zFormula(m: number[][] | null): number {
  let sum = 0;
  let counted = 0;
  for (let l = 0; l < L; l++)
    layerLogits(l).forEach((row, n) => {
      const w = m ? m[Math.floor(n / 3)][n % 3] : 1;
      const lse = Math.log(row.reduce((s, x) => s + Math.exp(x), 0));
      sum += w * lse * lse;
      counted += w;
    });
  return sum / counted;
}

const logitsT = (): k.Tensor[] => [0, 1].map((l) => k.tensor(layerLogits(l), { dtype: 'float64', requiresGrad: true }));
const maskT = (): k.Tensor => k.tensor(mask, { dtype: 'int64' });

describe('router losses = their formulas (float64)', () => {
  for (const topK of [1, 2, 3])
    test(`load balancing, top-${topK}, without and with the attention mask`, () => {
      k.tidy(() => {
        assertClose([loadBalancingLoss(logitsT(), E, topK, null).item()], [balancingFormula(topK, null)], { atol: 1e-14, rtol: 1e-12 });
        assertClose([loadBalancingLoss(logitsT(), E, topK, maskT()).item()], [balancingFormula(topK, mask)], { atol: 1e-14, rtol: 1e-12 });
      });
    });

  test('a perfectly balanced top-1 router scores 1 (E * sum 1/E * 1/E * E)', () => {
    k.tidy(() => {
      // token n strongly prefers expert n % 4, each expert the same number of tokens; probabilities symmetric
      const rows = Array.from({ length: 8 }, (_, n) => Array.from({ length: 4 }, (_, e) => (e === n % 4 ? 5 : 0)));
      assertClose([loadBalancingLoss([k.tensor(rows, { dtype: 'float64' })], 4, 1, null).item()], [1], { atol: 1e-14, rtol: 1e-12 });
    });
  });

  test('z-loss, without and with the attention mask', () => {
    k.tidy(() => {
      assertClose([routerZLoss(logitsT(), null).item()], [zFormula(null)], { atol: 1e-14, rtol: 1e-12 });
      assertClose([routerZLoss(logitsT(), maskT()).item()], [zFormula(mask)], { atol: 1e-14, rtol: 1e-12 });
    });
  });

  test('gradients by finite differences (the top-k choice is piecewise constant, as in HF)', () => {
    gradcheck((a, b) => loadBalancingLoss([a, b], E, 2, maskT()), logitsT(), { what: 'load balancing' });
    gradcheck((a, b) => routerZLoss([a, b], maskT()), logitsT(), { what: 'z-loss' });
  });

  test('bad router logits are named', () => {
    assert.throws(() => loadBalancingLoss([], E, 2, null), /no router logits/);
    assert.throws(() => routerZLoss([k.zeros([6, 4]), k.zeros([5, 4])], null), /layer 1 logits \[5, 4\], layer 0 has 6 tokens/);
    assert.throws(() => routerZLoss([k.zeros([6, 4])], k.ones([2, 2])), /attentionMask \[2, 2\] does not cover the 6 routed tokens/);
  });
});

describe('CausalLM adds the router losses to its loss', () => {
  const rawConfig = {
    model_type: 'mixtral', vocab_size: 20, hidden_size: 16, intermediate_size: 8, num_hidden_layers: 2, num_attention_heads: 4,
    num_key_value_heads: 2, num_local_experts: 4, num_experts_per_tok: 2, router_aux_loss_coef: 0.25,
  };
  const lossOf = (over: Record<string, unknown>, routerAuxLoss?: boolean) => k.tidy(() => {
    const m = new k.CausalLM(decoderConfig({ ...rawConfig, ...over }, 'c'), { generator: new k.Generator(5), dtype: 'float64' });
    const ids = k.tensor([[1, 4, 9, 3, 7], [2, 2, 8, 19, 0]], { dtype: 'int64' });
    const attentionMask = k.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]], { dtype: 'int64' });
    const out = m.forward({ inputIds: ids, attentionMask, labels: ids, routerAuxLoss });
    const z = routerZLoss(out.routerLogits, attentionMask).item();
    const r = { loss: out.loss!.item(), aux: out.auxLoss!.item(), z, zOut: out.zLoss?.item() ?? null };
    m.dispose();
    return r;
  });

  test('aux: added with router_aux_loss_coef when output_router_logits (the config default) or routerAuxLoss', () => {
    const plain = lossOf({});
    const withAux = lossOf({ output_router_logits: true });
    assertClose([withAux.loss - plain.loss], [0.25 * plain.aux], { atol: 1e-12, rtol: 1e-9 });
    assertClose([lossOf({}, true).loss], [withAux.loss], { atol: 0, rtol: 0 });
    assertClose([lossOf({ output_router_logits: true }, false).loss], [plain.loss], { atol: 0, rtol: 0 });
  });

  test('z-loss: added with router_z_loss_coef, reported as zLoss', () => {
    const plain = lossOf({});
    const withZ = lossOf({ router_z_loss_coef: 0.01 });
    assert.equal(plain.zOut, null);
    assertClose([withZ.zOut!], [plain.z], { atol: 0, rtol: 1e-12 });
    assertClose([withZ.loss - plain.loss], [0.01 * plain.z], { atol: 1e-12, rtol: 1e-9 });
  });
});
