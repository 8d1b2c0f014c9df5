// Rotary frequencies for each rope_scaling type, against values worked out by hand from the
// formulas of transformers 4.44 (modeling_rope_utils.py) for head_dim 4, base 100.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { DecoderConfig, RopeScaling } from '../../src/models/config.js';
import { DEFAULT_CONFIG } from '../../src/models/config.js';
import { rotaryFrequencies } from '../../src/models/rope_scaling.js';
import { assertClose } from '../helpers.js';

function cfg(ropeScaling: RopeScaling | null, maxPositionEmbeddings = 16): DecoderConfig {
  return {
    ...DEFAULT_CONFIG, modelType: 'llama', vocabSize: 8, hiddenSize: 8, intermediateSize: 8, numLayers: 1, numHeads: 2, numKvHeads: 2,
    headDim: 4, slidingWindows: [0], attentionScale: 0.5, ropeTheta: 100, ropeScaling, maxPositionEmbeddings,
  };
}
const close = (got: Float32Array, want: number[]): void => assertClose(got, want, { atol: 0, rtol: 1e-6 });

test('default: base^(-2i/dim) = [1, 1/10]', () => close(rotaryFrequencies(cfg(null), 8).invFreq, [1, 0.1]));

test('linear divides by the factor', () => close(rotaryFrequencies(cfg({ type: 'linear', factor: 4 }), 8).invFreq, [0.25, 0.025]));

test('dynamic grows the base only past max_position_embeddings', () => {
  close(rotaryFrequencies(cfg({ type: 'dynamic', factor: 2 }), 16).invFreq, [1, 0.1]);
  // seq 32: base' = 100 * (2*32/16 - 1)^(4/2) = 900 -> [1, 1/30]
  close(rotaryFrequencies(cfg({ type: 'dynamic', factor: 2 }), 32).invFreq, [1, 1 / 30]);
});

test('llama3 keeps high frequencies, divides low ones, smooths between', () => {
  // wavelengths 2pi and 20pi; original context 32, low 1 -> low_wavelen 32, high 2 -> high_wavelen 16
  // 2pi < 16: kept (1). 20pi = 62.8 > 32: divided by 8 -> 0.0125
  close(rotaryFrequencies(cfg({ type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 2, originalMaxPositionEmbeddings: 32 }), 8).invFreq, [1, 0.0125]);
  // original 128: low_wavelen 128, high_wavelen 64; 20pi = 62.8 < 64 kept; 2pi kept
  close(rotaryFrequencies(cfg({ type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 2, originalMaxPositionEmbeddings: 128 }), 8).invFreq, [1, 0.1]);
  // original 96: 20pi is medium; smooth = (96/62.83 - 1)/(2 - 1) = 0.5279; f = (1-s) 0.1/8 + s 0.1
  const s = 96 / (20 * Math.PI) - 1;
  close(rotaryFrequencies(cfg({ type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 2, originalMaxPositionEmbeddings: 96 }), 8).invFreq, [1, (1 - s) * 0.0125 + s * 0.1]);
});

test('longrope switches factor lists past the original context and scales cos/sin', () => {
  const sc: RopeScaling = { type: 'longrope', factor: 1, shortFactor: [1, 2], longFactor: [4, 8], originalMaxPositionEmbeddings: 16 };
  const short = rotaryFrequencies(cfg(sc, 64), 10);
  close(short.invFreq, [1, 0.05]);
  close(rotaryFrequencies(cfg(sc, 64), 20).invFreq, [0.25, 0.0125]);
  // scale = 64/16 = 4: sqrt(1 + ln 4 / ln 16) = sqrt(1.5)
  assert.ok(Math.abs(short.attentionFactor - Math.sqrt(1.5)) < 1e-12);
});

test('yarn blends interpolation and extrapolation by the correction range; mscale 0.1 ln(s) + 1', () => {
  // dim 4, base 100, max 16, factor 4, beta_fast 32, beta_slow 1:
  // correction_dim(r) = 4 ln(16 / (2 pi r)) / (2 ln 100): r=32 -> -0.7992 -> floor -1 -> low 0;
  // r=1 -> 0.2030 -> ceil 1 -> high 1. ramp(i) = clamp((i - 0)/(1 - 0)) = [0, 1] -> extrapolation = [1, 0]
  // inv_freq = [1 (extrapolated), 0.1/4 (interpolated)]
  const y = rotaryFrequencies(cfg({ type: 'yarn', factor: 4 }), 8);
  close(y.invFreq, [1, 0.025]);
  assert.ok(Math.abs(y.attentionFactor - (0.1 * Math.log(4) + 1)) < 1e-12);
});
