// Logits processing by definition (HF's warpers), seeded sampling, stop strings, eos and
// streaming on a small random model.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';
import { applyPresenceFrequencyPenalty, applyRepetitionPenalty, drawFrom, logSoftmax, samplingProbs } from '../../src/infer/sampling.js';
import { assertClose } from '../helpers.js';

const logits = (): Float32Array => Float32Array.from([2, 1, 0, -1, 3]);

describe('logits processing', () => {
  test('temperature divides logits before softmax', () => {
    const p = samplingProbs(logits(), { temperature: 2 });
    const e = [...logits()].map((x) => Math.exp(x / 2));
    const s = e.reduce((a, b) => a + b);
    assertClose(p, e.map((x) => x / s), { atol: 1e-12, rtol: 1e-9 });
  });

  test('top-k keeps the k largest', () => {
    const p = samplingProbs(logits(), { topK: 2 });
    assert.deepEqual([...p].map((x) => x > 0), [true, false, false, false, true]);
  });

  test('top-p keeps the smallest prefix reaching the mass (at least one token)', () => {
    // probabilities of [3, 2, 1, 0, -1] descending: .6364 .2341 .0861 .0317 .0117
    assert.deepEqual([...samplingProbs(logits(), { topP: 0.7 })].map((x) => x > 0), [true, false, false, false, true]);
    assert.deepEqual([...samplingProbs(logits(), { topP: 0.5 })].map((x) => x > 0), [false, false, false, false, true]);
    assert.deepEqual([...samplingProbs(logits(), { topP: 0.9 })].map((x) => x > 0), [true, true, false, false, true]);
  });

  test('min-p drops tokens below min_p times the top probability', () => {
    // p(2)/p(3) = e^-1 = .368, p(1)/p(3) = e^-2 = .135
    assert.deepEqual([...samplingProbs(logits(), { minP: 0.2 })].map((x) => x > 0), [true, false, false, false, true]);
  });

  test('repetition penalty divides positive and multiplies negative logits of seen tokens', () => {
    const l = logits();
    applyRepetitionPenalty(l, [0, 3, 0], 2);
    assert.deepEqual([...l], [1, 1, 0, -2, 3]);
  });

  test('presence and frequency penalties subtract presence + frequency * count from generated tokens (OpenAI)', () => {
    const l = logits();
    applyPresenceFrequencyPenalty(l, [0, 0, 0, 3], { presencePenalty: 0.5, frequencyPenalty: 0.25 });
    // token 0 seen 3 times: 2 - 0.5 - 0.75; token 3 once: -1 - 0.5 - 0.25; the others untouched
    assert.deepEqual([...l], [0.75, 1, 0, -1.75, 3]);
    const neg = logits();
    applyPresenceFrequencyPenalty(neg, [4], { presencePenalty: -1 });
    assert.deepEqual([...neg], [2, 1, 0, -1, 4]);
  });

  test('logSoftmax equals log(exp(z) / sum exp(z)) in float64, also for large logits', () => {
    const z = logits();
    const s = [...z].reduce((a, x) => a + Math.exp(x), 0);
    assertClose(logSoftmax(z), [...z].map((x) => x - Math.log(s)), { atol: 1e-12, rtol: 1e-12 });
    const big = Float32Array.from([1000, 999]); // exp overflows without the max shift
    assertClose(logSoftmax(big), [-Math.log(1 + Math.exp(-1)), -1 - Math.log(1 + Math.exp(-1))], { atol: 1e-12, rtol: 1e-12 });
  });

  test('draws follow the cumulative distribution', () => {
    const p = Float64Array.from([0.5, 0, 0.25, 0.25]);
    assert.deepEqual([0, 0.49, 0.5, 0.74, 0.75, 0.999].map((u) => drawFrom(p, u)), [0, 0, 2, 2, 3, 3]);
  });
});

describe('generate on a random model', () => {
  const config: k.DecoderConfig = {
    modelType: 'llama', vocabSize: 32, hiddenSize: 16, intermediateSize: 32, numLayers: 2, numHeads: 2, numKvHeads: 1, headDim: 8,
    rmsNormEps: 1e-6, ropeTheta: 10000, ropeScaling: null, partialRotaryFactor: 1, maxPositionEmbeddings: 64, tieWordEmbeddings: false,
    qkvBias: false, oBias: false, mlpBias: false, activation: 'silu', normOffset: 0, scaleEmbeddings: false, slidingWindows: [0, 0],
    attentionScale: 1 / Math.sqrt(8), attnSoftcap: 0, finalSoftcap: 0, qkNorm: false, sandwichNorms: false, fusedQkv: false,
    fusedGateUp: false, moe: null, bosTokenId: null, eosTokenIds: [], padTokenId: null, initializerRange: 0.02,
  };
  k.manualSeed(1);
  const model = new k.CausalLM(config);
  const prompt = (): k.Tensor => k.tensor([[1, 2, 3]], { dtype: 'int64' });

  test('the same seed gives the same sample; sampling differs from greedy somewhere', async () => {
    const a = (await model.generate(prompt(), { maxNewTokens: 8, temperature: 1.5, seed: 7 })).toArray();
    const b = (await model.generate(prompt(), { maxNewTokens: 8, temperature: 1.5, seed: 7 })).toArray();
    const c = (await model.generate(prompt(), { maxNewTokens: 8, temperature: 1.5, seed: 8 })).toArray();
    assert.deepEqual(a, b);
    assert.notDeepEqual(a, c);
  });

  test('greedy equals the argmax of a full forward at every step (the cache path is exact)', async () => {
    const out = (await model.generate(prompt(), { maxNewTokens: 5, temperature: 0 })).toArray() as number[][];
    for (let t = 3; t < 8; t++) {
      const next = k.tidy(() => {
        const logits = model.forward({ inputIds: k.tensor([out[0].slice(0, t)], { dtype: 'int64' }) }).logits!;
        return logits.select(1, t - 1).argmax(-1).item();
      });
      assert.equal(out[0][t], next, `step ${t}`);
    }
  });

  test('a frequency penalty reaches the scores generate() picks from', async () => {
    const seen: Float32Array[] = [];
    const plain: Float32Array[] = [];
    const out = (await model.generate(prompt(), { maxNewTokens: 3, temperature: 0, frequencyPenalty: 2, onScores: (_, s) => seen.push(s[0].slice()) })).toArray() as number[][];
    await model.generate(k.tensor([out[0].slice(0, 5)], { dtype: 'int64' }), { maxNewTokens: 1, temperature: 0, onScores: (_, s) => plain.push(s[0]) });
    // the third step's scores are the raw logits after [prompt, g0, g1] minus 2 per generated occurrence
    const want = plain[0].slice();
    for (const t of out[0].slice(3, 5)) want[t] -= 2;
    assertClose(seen[2], want, { atol: 1e-5, rtol: 1e-5 });
  });

  test('eos stops a row; stop strings stop on decoded text; stream yields each step', async () => {
    const greedy = (await model.generate(prompt(), { maxNewTokens: 6, temperature: 0 })).toArray() as number[][];
    const eos = greedy[0][5];
    const stopped = (await model.generate(prompt(), { maxNewTokens: 6, temperature: 0, eosTokenId: eos })).toArray() as number[][];
    const firstEos = greedy[0].indexOf(eos, 3); // the row ends with the first eos it generates
    assert.deepEqual(stopped[0], greedy[0].slice(0, firstEos + 1));
    const decode = (ids: number[]): string => ids.map((i) => String.fromCharCode(97 + (i % 26))).join('');
    const stopAt = decode([greedy[0][4]]);
    const s = (await model.generate(prompt(), { maxNewTokens: 6, temperature: 0, stopStrings: [stopAt], decode })).toArray() as number[][];
    assert.equal(s[0].length, 5);
    const steps: number[] = [];
    for await (const { tokens, step } of model.stream(prompt(), { maxNewTokens: 4, temperature: 0 })) steps.push(step, tokens[0]);
    assert.deepEqual(steps.filter((_, i) => i % 2 === 1), greedy[0].slice(3, 7));
  });
});
