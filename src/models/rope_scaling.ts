// Rotary frequencies for every rope_scaling type of HF 4.44 (modeling_rope_utils.py and
// Phi-3's LongRoPE): the inverse frequencies and the factor cos/sin are multiplied by.
import type { DecoderConfig } from './config.js';

export interface RotaryFrequencies {
  invFreq: Float32Array;
  /** multiplies cos and sin (yarn's mscale, longrope's scaling factor); 1 otherwise */
  attentionFactor: number;
}

/** base^(-2i/dim), computed in float32 as torch does */
function baseInvFreq(base: number, dim: number): Float32Array {
  return Float32Array.from({ length: dim / 2 }, (_, i) => Math.fround(1 / Math.fround(base ** Math.fround((2 * i) / dim))));
}

/**
 * Frequencies for a sequence reaching `seqLen` positions (dynamic NTK and LongRoPE depend on it).
 * @example rotaryFrequencies(config, 4096).invFreq
 */
export function rotaryFrequencies(c: DecoderConfig, seqLen: number): RotaryFrequencies {
  const dim = Math.floor(c.headDim * c.partialRotaryFactor);
  const s = c.ropeScaling;
  const base = c.ropeTheta;
  if (!s || s.type === 'default') return { invFreq: baseInvFreq(base, dim), attentionFactor: 1 };
  switch (s.type) {
    case 'linear':
      return { invFreq: baseInvFreq(base, dim).map((f) => f / s.factor), attentionFactor: 1 };
    case 'dynamic': {
      const max = c.maxPositionEmbeddings;
      if (seqLen <= max) return { invFreq: baseInvFreq(base, dim), attentionFactor: 1 };
      const b = base * ((s.factor * seqLen) / max - (s.factor - 1)) ** (dim / (dim - 2));
      return { invFreq: baseInvFreq(b, dim), attentionFactor: 1 };
    }
    case 'llama3': {
      const old = s.originalMaxPositionEmbeddings ?? 8192;
      const [low, high] = [s.lowFreqFactor ?? 1, s.highFreqFactor ?? 4];
      const [lowWavelen, highWavelen] = [old / low, old / high];
      const invFreq = baseInvFreq(base, dim).map((f) => {
        const wavelen = (2 * Math.PI) / f;
        if (wavelen < highWavelen) return f;
        if (wavelen > lowWavelen) return f / s.factor;
        const smooth = (old / wavelen - low) / (high - low);
        return (1 - smooth) * (f / s.factor) + smooth * f;
      });
      return { invFreq, attentionFactor: 1 };
    }
    case 'yarn':
      return yarn(c, dim, s.factor, s.betaFast ?? 32, s.betaSlow ?? 1, s.attentionFactor);
    case 'longrope': {
      const original = s.originalMaxPositionEmbeddings ?? c.maxPositionEmbeddings;
      const ext = seqLen > original ? s.longFactor : s.shortFactor;
      if (!ext || ext.length !== dim / 2) throw new Error(`rope_scaling longrope: long_factor/short_factor must have ${dim / 2} entries`);
      const scale = c.maxPositionEmbeddings / original;
      const attentionFactor = s.attentionFactor ?? (scale <= 1 ? 1 : Math.sqrt(1 + Math.log(scale) / Math.log(original)));
      const invFreq = Float32Array.from({ length: dim / 2 }, (_, i) => 1 / (ext[i] * base ** ((2 * i) / dim)));
      return { invFreq, attentionFactor };
    }
  }
}

function yarn(c: DecoderConfig, dim: number, factor: number, betaFast: number, betaSlow: number, attention?: number): RotaryFrequencies {
  const base = c.ropeTheta;
  const max = c.maxPositionEmbeddings;
  const correctionDim = (rot: number): number => (dim * Math.log(max / (rot * 2 * Math.PI))) / (2 * Math.log(base));
  const low = Math.max(Math.floor(correctionDim(betaFast)), 0);
  let high = Math.min(Math.ceil(correctionDim(betaSlow)), dim - 1);
  if (low === high) high += 0.001;
  const invFreq = Float32Array.from({ length: dim / 2 }, (_, i) => {
    const pos = base ** ((2 * i) / dim);
    const ramp = Math.min(Math.max((i - low) / (high - low), 0), 1);
    const extrapolation = 1 - ramp;
    return (1 / (factor * pos)) * (1 - extrapolation) + (1 / pos) * extrapolation;
  });
  const attentionFactor = attention ?? (factor <= 1 ? 1 : 0.1 * Math.log(factor) + 1);
  return { invFreq, attentionFactor };
}
