// EnCodec (HF modeling_encodec.py, EncodecModel; Défossez et al. 2022, "High Fidelity Neural Audio
// Compression"): a SEANet convolutional encoder turns a waveform into a latent at frame_rate, a
// residual vector quantiser turns that into codebook indices, and a mirrored decoder turns the
// summed code vectors back into a waveform. Inference only: the codec is frozen wherever Kestrel
// uses it (text-to-speech trains the LM on its codes). Layer indices and names are HF's.
import { toTypedArray } from '../ops/transfer.js';
import { select, unsqueeze } from '../ops/view.js';
import { shapeStr } from '../tensor/layout.js';
import { noGrad } from '../tensor/grad_mode.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import type { BackendName } from '../backend/kernels.js';
import type { InitOpts } from '../nn/init.js';
import { Module } from '../nn/module.js';
import type { PadMode } from '../ops/pad.js';
import { type EncodecConfig, codebooksForBandwidth, encodecConfig, frameRate, hopLength, numQuantizers } from './encodec_config.js';
import { ELU, EncodecConv1d, EncodecConvTranspose1d, EncodecLSTM, EncodecResnetBlock } from './encodec_layers.js';
import { EncodecResidualVectorQuantizer } from './encodec_quantizer.js';
import { loadModelFolder } from './load.js';
import { finishLoading } from './registry.js';

type Layer = EncodecConv1d | EncodecConvTranspose1d | EncodecResnetBlock | EncodecLSTM | ELU;

const conv = (c: EncodecConfig, i: number, o: number, kernel: number, init: InitOpts, stride = 1): EncodecConv1d =>
  new EncodecConv1d(i, o, { kernel, stride, causal: c.useCausalConv, padMode: c.padMode as PadMode }, init);

const resnetBlocks = (c: EncodecConfig, dim: number, init: InitOpts): EncodecResnetBlock[] =>
  Array.from({ length: c.numResidualLayers }, (_, j) => new EncodecResnetBlock(dim, {
    kernel: c.residualKernelSize, dilation: c.dilationGrowthRate ** j, compress: c.compress, causal: c.useCausalConv,
    padMode: c.padMode, convShortcut: c.useConvShortcut,
  }, init));

/** conv -> per ratio (smallest first): residual blocks, ELU, strided conv doubling channels -> LSTM, ELU, conv to hidden_size */
class EncodecEncoder extends Module {
  layers: Layer[];
  constructor(c: EncodecConfig, init: InitOpts) {
    super();
    let scale = 1;
    const layers: Layer[] = [conv(c, c.audioChannels, c.numFilters, c.kernelSize, init)];
    for (const ratio of [...c.upsamplingRatios].reverse()) {
      const ch = c.numFilters * scale;
      layers.push(...resnetBlocks(c, ch, init), new ELU(), conv(c, ch, 2 * ch, 2 * ratio, init, ratio));
      scale *= 2;
    }
    layers.push(new EncodecLSTM(c.numFilters * scale, c.numLstmLayers, init), new ELU(), conv(c, c.numFilters * scale, c.hiddenSize, c.lastKernelSize, init));
    this.layers = layers;
  }
  forward(x: Tensor): Tensor {
    return tidy(() => this.layers.reduce((h, layer) => layer.forward(h), x));
  }
}

/** conv from hidden_size -> LSTM -> per ratio: ELU, transposed conv halving channels, residual blocks -> ELU, conv to audio */
class EncodecDecoder extends Module {
  layers: Layer[];
  constructor(c: EncodecConfig, init: InitOpts) {
    super();
    let scale = 2 ** c.upsamplingRatios.length;
    const top = c.numFilters * scale;
    const layers: Layer[] = [conv(c, c.hiddenSize, top, c.kernelSize, init), new EncodecLSTM(top, c.numLstmLayers, init)];
    for (const ratio of c.upsamplingRatios) {
      const ch = c.numFilters * scale;
      layers.push(new ELU(), new EncodecConvTranspose1d(ch, ch / 2, 2 * ratio, ratio, c.useCausalConv, c.trimRightRatio, init), ...resnetBlocks(c, ch / 2, init));
      scale /= 2;
    }
    layers.push(new ELU(), conv(c, c.numFilters, c.audioChannels, c.lastKernelSize, init));
    this.layers = layers;
  }
  forward(x: Tensor): Tensor {
    return tidy(() => this.layers.reduce((h, layer) => layer.forward(h), x));
  }
}

export class EncodecModel extends Module {
  encoder: EncodecEncoder;
  decoder: EncodecDecoder;
  quantizer: EncodecResidualVectorQuantizer;
  constructor(readonly config: EncodecConfig, init: InitOpts = {}) {
    super();
    this.encoder = new EncodecEncoder(config, init);
    this.decoder = new EncodecDecoder(config, init);
    this.quantizer = new EncodecResidualVectorQuantizer(Math.max(1, numQuantizers(config)), config.codebookSize, config.codebookDim, init);
  }

  get frameRate(): number {
    return frameRate(this.config);
  }
  get hopLength(): number {
    return hopLength(this.config);
  }

  /** Codebooks used at `bandwidth` kbps (default: the largest target bandwidth). */
  codebooks(bandwidth?: number): number {
    const bws = this.config.targetBandwidths;
    return codebooksForBandwidth(this.config, bandwidth ?? bws[bws.length - 1]);
  }

  /**
   * One clip's waveform [channels, T] at config.sampling_rate -> codes [codebooks, ceil(T / hop)] (int64).
   * @example const codes = codec.encode(loadAudio('a.wav', { sampleRate: 24000, mono: true }).samples, { bandwidth: 1.5 })
   */
  encode(waveform: Tensor, opts: { bandwidth?: number } = {}): Tensor {
    const C = this.config.audioChannels;
    if (waveform.ndim !== 2 || waveform.shape[0] !== C || waveform.shape[1] < 1)
      throw new Error(`encodec encode: waveform ${shapeStr(waveform.shape)} must be [${C} (audio_channels), frames >= 1]`);
    const nq = this.codebooks(opts.bandwidth);
    return noGrad(() => tidy(() => this.quantizer.encode(this.encoder.forward(unsqueeze(waveform, 0)), nq)));
  }

  /**
   * Codes [codebooks, frames] -> waveform [channels, frames x hop].
   * @example saveWav('out.wav', codec.decode(codes), 24000)
   */
  decode(codes: Tensor): Tensor {
    if (codes.ndim !== 2) throw new Error(`encodec decode: codes ${shapeStr(codes.shape)} must be [codebooks, frames]`);
    const K = this.config.codebookSize;
    const bad = Array.from(toTypedArray(codes) as ArrayLike<number | bigint>, Number).findIndex((v) => !(v >= 0 && v < K));
    if (bad >= 0) throw new Error(`encodec decode: code at flat index ${bad} is outside [0, ${K}) (codebook_size)`);
    return noGrad(() => tidy(() => select(this.decoder.forward(this.quantizer.decode(codes)), 0, 0)));
  }
}

/**
 * Loads an HF EnCodec folder (config.json + model.safetensors with weight-norm convs), strictly,
 * frozen and in eval mode.
 * @example const codec = loadEncodec('encodec_24khz')
 */
export function loadEncodec(dir: string, opts: { backend?: BackendName } = {}): EncodecModel {
  return loadModelFolder(dir, {
    modelType: 'encodec', typeOptional: true, backend: opts.backend,
    build: (config, file) => new EncodecModel(encodecConfig(config, file), { backend: 'meta' }),
    after: finishLoading,
  });
}
