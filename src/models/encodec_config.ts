// EncodecConfig (HF configuration_encodec.py) read from config.json, with the derived numbers
// transformers computes: frame rate, hop length and the number of residual codebooks per bandwidth.
import { CONFIG_LIMITS, ConfigReader, type Json } from './families/hf_config.js';

export interface EncodecConfig {
  samplingRate: number;
  audioChannels: number;
  hiddenSize: number;
  numFilters: number;
  numResidualLayers: number;
  upsamplingRatios: number[];
  kernelSize: number;
  lastKernelSize: number;
  residualKernelSize: number;
  dilationGrowthRate: number;
  useCausalConv: boolean;
  padMode: 'reflect' | 'constant';
  compress: number;
  numLstmLayers: number;
  trimRightRatio: number;
  codebookSize: number;
  codebookDim: number;
  useConvShortcut: boolean;
  targetBandwidths: number[];
}

function numbers(r: ConfigReader, field: string, fallback: number[]): number[] {
  const v = r.raw[field] ?? fallback;
  if (!Array.isArray(v) || v.length === 0 || !v.every((x) => typeof x === 'number' && Number.isFinite(x) && x > 0))
    throw r.error(field, `must be a non-empty list of positive numbers, got ${JSON.stringify(v)}`);
  return v as number[];
}

/** @example encodecConfig(readJson('encodec/config.json'), 'encodec/config.json') */
export function encodecConfig(raw: Json, file: string): EncodecConfig {
  const r = new ConfigReader(raw, file);
  const norm = r.str('norm_type', 'weight_norm');
  if (norm !== 'weight_norm') throw r.error('norm_type', `'${norm}' is not supported (weight_norm, as encodec_24khz)`);
  if (r.bool('normalize', false)) throw r.error('normalize', 'true (per-chunk loudness scales, encodec_48khz) is not supported');
  if (raw.chunk_length_s != null) throw r.error('chunk_length_s', 'chunked encoding (encodec_48khz) is not supported; use null');
  const padMode = r.str('pad_mode', 'reflect');
  if (padMode !== 'reflect' && padMode !== 'constant') throw r.error('pad_mode', `'${padMode}' is not supported (reflect or constant)`);
  const c: EncodecConfig = {
    samplingRate: r.size('sampling_rate', 1 << 20, 24000), audioChannels: r.size('audio_channels', 8, 1),
    hiddenSize: r.size('hidden_size', CONFIG_LIMITS.hidden, 128), numFilters: r.size('num_filters', CONFIG_LIMITS.hidden, 32),
    numResidualLayers: r.size('num_residual_layers', 16, 1), upsamplingRatios: numbers(r, 'upsampling_ratios', [8, 5, 4, 2]),
    kernelSize: r.size('kernel_size', 64, 7), lastKernelSize: r.size('last_kernel_size', 64, 7),
    residualKernelSize: r.size('residual_kernel_size', 64, 3), dilationGrowthRate: r.size('dilation_growth_rate', 16, 2),
    useCausalConv: r.bool('use_causal_conv', true), padMode, compress: r.size('compress', 64, 2),
    numLstmLayers: r.size('num_lstm_layers', 16, 2), trimRightRatio: r.num('trim_right_ratio', 1),
    codebookSize: r.size('codebook_size', 1 << 16, 1024), codebookDim: r.size('codebook_dim', CONFIG_LIMITS.hidden, 128),
    useConvShortcut: r.bool('use_conv_shortcut', true), targetBandwidths: numbers(r, 'target_bandwidths', [1.5, 3, 6, 12, 24]),
  };
  if (!c.upsamplingRatios.every(Number.isInteger)) throw r.error('upsampling_ratios', 'must be integers');
  if (c.codebookDim !== c.hiddenSize) throw r.error('codebook_dim', `(${c.codebookDim}) must equal hidden_size (${c.hiddenSize})`);
  if (!(c.trimRightRatio >= 0 && c.trimRightRatio <= 1)) throw r.error('trim_right_ratio', 'must be in [0, 1]');
  return c;
}

/** Samples per code frame: the product of the ratios. */
export const hopLength = (c: EncodecConfig): number => c.upsamplingRatios.reduce((a, b) => a * b, 1);

/** Code frames per second, ceil(rate / hop) as transformers computes it. */
export const frameRate = (c: EncodecConfig): number => Math.ceil(c.samplingRate / hopLength(c));

/** Codebooks the model has: int(1000 top_bandwidth // (frame_rate 10)) (transformers assumes 10-bit codebooks here). */
export const numQuantizers = (c: EncodecConfig): number =>
  Math.floor((1000 * c.targetBandwidths[c.targetBandwidths.length - 1]) / (frameRate(c) * 10));

/**
 * Codebooks used at a bandwidth (kbps): max(1, floor(bw 1000 / (log2(codebook_size) frame_rate))),
 * capped by the codebooks the model has (transformers slices its layer list). The bandwidth must be
 * one of the config's target_bandwidths, as transformers requires.
 */
export function codebooksForBandwidth(c: EncodecConfig, bandwidth: number): number {
  if (!c.targetBandwidths.includes(bandwidth))
    throw new Error(`encodec: bandwidth ${bandwidth} is not one of the model's target_bandwidths [${c.targetBandwidths.join(', ')}]`);
  const perCodebook = Math.log2(c.codebookSize) * frameRate(c);
  return Math.min(numQuantizers(c), Math.max(1, Math.floor((bandwidth * 1000) / perCodebook)));
}
