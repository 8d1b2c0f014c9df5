// samplingProbs ranks only the prefix its filters need (topIndices) instead of sorting the whole
// vocabulary; seeded sampling must not change, so every probability must be the very double the
// dense definition gives (src/infer/sampling_reference.ts: HF's warpers over a stable sort of all
// V), compared bit for bit on rows with ties and -Infinity.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type SamplingOptions, drawFrom, samplingProbs } from '../../src/infer/sampling.js';
import { denseProbs } from '../../src/infer/sampling_reference.js';
import { topIndices } from '../../src/infer/top_indices.js';
import { topLogprobs } from '../../src/serve/engine.js';

/** A deterministic row: spread-out scores, a run of exact ties and (optionally) masked -Infinity entries. */
function row(V: number, seed: number, spread: number, masked: boolean): Float32Array {
  let s = seed;
  const next = (): number => (s = (s * 16807) % 2147483647) / 2147483647;
  const z = Float32Array.from({ length: V }, () => (next() - 0.5) * spread);
  for (let i = 0; i < V; i += 5) z[i] = 1.25; // ties, also at the top-k / top-p boundaries
  if (masked) for (let i = 1; i < V; i += 3) z[i] = -Infinity; // a logits processor's mask
  return z;
}

const OPTIONS: SamplingOptions[] = [
  { temperature: 1 },
  { temperature: 0.7, topK: 50 },
  { temperature: 1, topK: 3 },
  { temperature: 0.8, topK: 50, topP: 0.95 },
  { temperature: 1.3, topP: 0.9 },
  { temperature: 1, topP: 0.999 },
  { temperature: 0.5, topP: 0.3 },
  { temperature: 0.7, minP: 0.05 },
  { temperature: 1, topK: 40, topP: 0.8, minP: 0.1 },
];

describe('samplingProbs equals the dense definition bit for bit', () => {
  for (const V of [1, 7, 33, 257, 4099])
    test(`V = ${V}`, () => {
      for (const [seed, spread, masked] of [[7, 8, false], [11, 30, true], [13, 0.5, false]] as const) {
        const z = row(V, seed, spread, masked);
        for (const o of OPTIONS) {
          const got = samplingProbs(z, o);
          const want = denseProbs(z, o);
          const bad = got.findIndex((p, i) => !Object.is(p, want[i]));
          assert.equal(bad, -1, `${JSON.stringify(o)} seed ${seed}: p[${bad}] = ${got[bad]}, the definition gives ${want[bad]}`);
          for (const u of [0, 0.3, 0.999]) assert.equal(drawFrom(got, u), drawFrom(want, u));
        }
      }
    });

  test('a row with every kept logit -Infinity gives NaN everywhere, as the definition does', () => {
    const z = Float32Array.from([-Infinity, -Infinity, -Infinity]);
    assert.deepEqual([...samplingProbs(z, { topK: 2 })], [...denseProbs(z, { topK: 2 })]);
  });
});

describe('topIndices', () => {
  test('equals the first m of a stable descending sort (ties by lower index), on odd sizes', () => {
    for (const V of [1, 7, 33, 257]) {
      const z = row(V, V, 4, true);
      const sorted = Array.from(z.keys()).sort((a, b) => z[b] - z[a]);
      for (const m of [0, 1, 2, 5, V - 1, V, V + 3]) assert.deepEqual(topIndices(z, m), sorted.slice(0, Math.max(0, Math.min(m, V))), `V ${V} m ${m}`);
    }
  });

  test('topLogprobs reports the k best ids, best first, ties by lower id', () => {
    const lp = Float64Array.from([-2, -0.5, -3, -0.5, -1]);
    assert.deepEqual(topLogprobs(lp, 2, 3), { logprob: -3, top: [{ id: 1, logprob: -0.5 }, { id: 3, logprob: -0.5 }, { id: 4, logprob: -1 }] });
    assert.deepEqual(topLogprobs(lp, 0, 0).top, []);
  });
});
