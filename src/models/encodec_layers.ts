// EnCodec's SEANet building blocks as transformers 4.44 writes them (modeling_encodec.py):
// weight-normalised convolutions with causal or centred padding (reflect by default) plus the
// "extra" right padding that makes the last window full, transposed convolutions that trim their
// fixed padding, residual blocks and the LSTM with a skip connection. Parameter names are HF's.
import { convTranspose1d } from '../ops/conv_transpose.js';
import { conv1d } from '../ops/conv.js';
import { add, div, mul, unary } from '../ops/elementwise.js';
import { pad1d, type PadMode } from '../ops/pad.js';
import { sum } from '../ops/reduce.js';
import { narrow, permute } from '../ops/view.js';
import { elu } from '../ops/activation.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { type InitOpts, normal, onesInit, zerosInit } from '../nn/init.js';
import { LSTM } from '../nn/lstm.js';
import { Module, Parameter } from '../nn/module.js';

/** A conv (or transposed conv) weight stored as torch.nn.utils.weight_norm stores it: w = g v / ||v|| (norm over all dims but 0). */
class WeightNormConv extends Module {
  weight_g: Tensor;
  weight_v: Tensor;
  bias: Tensor;
  constructor(shape: [number, number, number], outChannels: number, init: InitOpts) {
    super();
    this.weight_g = Parameter(onesInit([shape[0], 1, 1], init));
    this.weight_v = Parameter(normal(shape, 1 / Math.sqrt(shape[1] * shape[2]), init));
    this.bias = Parameter(zerosInit([outChannels], init));
  }
  weight(): Tensor {
    return tidy(() => mul(this.weight_g, div(this.weight_v, unary('sqrt', sum(mul(this.weight_v, this.weight_v), [1, 2], true)))));
  }
}

export interface ConvSpec {
  kernel: number;
  stride?: number;
  dilation?: number;
  causal: boolean;
  padMode: PadMode;
}

/** EncodecConv1d: pads so that every input frame is seen and the output has ceil(T / stride) frames. */
export class EncodecConv1d extends Module {
  conv: WeightNormConv;
  constructor(inCh: number, outCh: number, readonly spec: ConvSpec, init: InitOpts) {
    super();
    this.conv = new WeightNormConv([outCh, inCh, spec.kernel], outCh, init);
  }
  forward(x: Tensor): Tensor {
    const { kernel, stride = 1, dilation = 1, causal, padMode } = this.spec;
    const span = (kernel - 1) * dilation + 1; // effective kernel size
    const paddingTotal = span - stride;
    const T = x.shape[2];
    // the right padding that makes the last window full (_get_extra_padding_for_conv1d)
    const frames = Math.ceil((T - span + paddingTotal) / stride + 1) - 1;
    const extra = frames * stride + span - paddingTotal - T;
    const right = paddingTotal >> 1; // centred: odd totals put the extra one on the left
    const [padL, padR] = causal ? [paddingTotal, extra] : [paddingTotal - right, right + extra];
    return tidy(() => conv1d(padded(x, padL, padR, padMode), this.conv.weight(), this.conv.bias, { stride, dilation }));
  }
}

/** transformers' _pad1d: reflect on an input no longer than the padding first appends zeros (then drops them). */
function padded(x: Tensor, left: number, right: number, mode: PadMode): Tensor {
  const T = x.shape[2];
  const longest = Math.max(left, right);
  if (mode !== 'reflect' || T > longest) return pad1d(x, left, right, mode);
  const extra = longest - T + 1;
  const out = pad1d(pad1d(x, 0, extra, 'constant'), left, right, 'reflect');
  return narrow(out, 2, 0, out.shape[2] - extra);
}

/** EncodecConvTranspose1d: upsamples by `stride` and trims the fixed padding kernel - stride. */
export class EncodecConvTranspose1d extends Module {
  conv: WeightNormConv;
  constructor(inCh: number, outCh: number, readonly kernel: number, readonly stride: number, readonly causal: boolean, readonly trimRightRatio: number, init: InitOpts) {
    super();
    this.conv = new WeightNormConv([inCh, outCh, kernel], outCh, init);
  }
  forward(x: Tensor): Tensor {
    const paddingTotal = this.kernel - this.stride;
    const right = this.causal ? Math.ceil(paddingTotal * this.trimRightRatio) : paddingTotal >> 1;
    const left = paddingTotal - right;
    return tidy(() => {
      const y = convTranspose1d(x, this.conv.weight(), this.conv.bias, { stride: this.stride });
      return narrow(y, 2, left, y.shape[2] - left - right);
    });
  }
}

/** The parameterless ELU as a layer, so layer indices match the checkpoint's. */
export class ELU extends Module {
  forward(x: Tensor): Tensor {
    return elu(x);
  }
}

/** ELU then conv, repeated (kernel k dilated, then kernel 1), plus a 1x1 conv shortcut or identity. */
export class EncodecResnetBlock extends Module {
  block: (ELU | EncodecConv1d)[];
  shortcut: EncodecConv1d | null;
  constructor(dim: number, o: { kernel: number; dilation: number; compress: number; causal: boolean; padMode: PadMode; convShortcut: boolean }, init: InitOpts) {
    super();
    const hidden = Math.floor(dim / o.compress);
    const conv = (i: number, oc: number, kernel: number, dilation: number): EncodecConv1d =>
      new EncodecConv1d(i, oc, { kernel, dilation, causal: o.causal, padMode: o.padMode }, init);
    // indices 0 and 2 are the parameterless ELUs (block.1.conv, block.3.conv in the checkpoint)
    this.block = [new ELU(), conv(dim, hidden, o.kernel, o.dilation), new ELU(), conv(hidden, dim, 1, 1)];
    this.shortcut = o.convShortcut ? conv(dim, dim, 1, 1) : null;
  }
  forward(x: Tensor): Tensor {
    return tidy(() => {
      const y = this.block.reduce((h, layer) => layer.forward(h), x);
      return add(this.shortcut ? this.shortcut.forward(x) : x, y);
    });
  }
}

/** A stacked LSTM over time with a skip connection, on conv layout [B, C, T]. */
export class EncodecLSTM extends Module {
  lstm: LSTM;
  constructor(dim: number, layers: number, init: InitOpts) {
    super();
    this.lstm = new LSTM(dim, dim, layers, init);
  }
  forward(x: Tensor): Tensor {
    return tidy(() => {
      const seq = permute(x, [2, 0, 1]); // [B, C, T] -> [T, B, C]
      return permute(add(this.lstm.forward(seq), seq), [1, 2, 0]);
    });
  }
}
