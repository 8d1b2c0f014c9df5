// torch.nn.LSTM (sequence-first [T, B, D], stacked layers, no projection, unidirectional) from
// matmul and pointwise ops, one time step at a time; parameter names are torch's (weight_ih_l0,
// weight_hh_l0, bias_ih_l0, bias_hh_l0, ...), so HF checkpoints (EnCodec's SEANet) load as they are.
// Gates in torch's order i, f, g, o: c' = sigmoid(f) c + sigmoid(i) tanh(g), h' = sigmoid(o) tanh(c').
import { zeros } from '../ops/creation.js';
import { add, mul, unary } from '../ops/elementwise.js';
import { linear } from '../ops/matmul.js';
import { narrow, select } from '../ops/view.js';
import { stack } from '../ops/indexing.js';
import { shapeStr } from '../tensor/layout.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { type InitOpts, uniform } from './init.js';
import { Module, Parameter } from './module.js';

/** The stacked LSTM's output [T, B, H] (final states are not returned: EnCodec does not use them). */
export class LSTM extends Module {
  [name: string]: unknown;
  constructor(readonly inputSize: number, readonly hiddenSize: number, readonly numLayers = 1, init: InitOpts = {}) {
    super();
    const bound = 1 / Math.sqrt(hiddenSize); // torch's init: U(-1/sqrt(H), 1/sqrt(H)) for every tensor
    for (let l = 0; l < numLayers; l++) {
      this[`weight_ih_l${l}`] = Parameter(uniform([4 * hiddenSize, l === 0 ? inputSize : hiddenSize], bound, init));
      this[`weight_hh_l${l}`] = Parameter(uniform([4 * hiddenSize, hiddenSize], bound, init));
      this[`bias_ih_l${l}`] = Parameter(uniform([4 * hiddenSize], bound, init));
      this[`bias_hh_l${l}`] = Parameter(uniform([4 * hiddenSize], bound, init));
    }
  }

  private weights(l: number): [Tensor, Tensor, Tensor, Tensor] {
    return [`weight_ih_l${l}`, `weight_hh_l${l}`, `bias_ih_l${l}`, `bias_hh_l${l}`].map((n) => this[n] as Tensor) as [Tensor, Tensor, Tensor, Tensor];
  }

  /**
   * @example new LSTM(32, 32, 2).forward(x)  // x [T, B, 32] -> [T, B, 32], zero initial states
   */
  forward(x: Tensor): Tensor {
    if (x.ndim !== 3 || x.shape[2] !== this.inputSize)
      throw new Error(`LSTM: input ${shapeStr(x.shape)} must be [T, B, ${this.inputSize}] (sequence first)`);
    return tidy(() => {
      let seq = x;
      for (let l = 0; l < this.numLayers; l++) seq = this.layer(seq, l);
      return seq;
    });
  }

  /** One layer over the whole sequence: the input projection for all steps at once, then the recurrence. */
  private layer(x: Tensor, l: number): Tensor {
    const [T, B] = x.shape;
    const H = this.hiddenSize;
    const [wih, whh, bih, bhh] = this.weights(l);
    const projected = add(linear(x, wih, bih), bhh); // [T, B, 4H]
    let h = zeros([B, H], { dtype: x.dtype, backend: x.backendName });
    let c = h;
    const outs: Tensor[] = [];
    for (let t = 0; t < T; t++) {
      const gates = add(select(projected, 0, t), linear(h, whh)); // [B, 4H]
      const gate = (k: number): Tensor => narrow(gates, 1, k * H, H);
      c = add(mul(unary('sigmoid', gate(1)), c), mul(unary('sigmoid', gate(0)), unary('tanh', gate(2))));
      h = mul(unary('sigmoid', gate(3)), unary('tanh', c));
      outs.push(h);
    }
    return stack(outs, 0);
  }
}
