// The MLP activations HF configs name (hidden_act / hidden_activation).
import { unary } from '../ops/elementwise.js';
import type { Tensor } from '../tensor/tensor.js';
import type { DecoderConfig } from './config.js';

export function activate(x: Tensor, act: DecoderConfig['activation']): Tensor {
  return unary(act === 'silu' ? 'silu' : act === 'gelu_tanh' ? 'gelu_tanh' : 'gelu_erf', x);
}
