// Gated linear units of a transformer MLP: act(gate) * up with SiLU (SwiGLU: Llama, Mistral,
// Qwen) or GELU (GeGLU: Gemma). The public op runs the fused kernel (src/ops/fused/glu.ts);
// gluComposite defines it from the elementwise primitives.
import type { GluActivation } from '../backend/kernels.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { mul, unary } from './elementwise.js';
import { gluFused } from './fused/glu.js';

/** HF's activation names (hidden_act) or the unary op names. */
export type GluActivationName = GluActivation | 'gelu';

/** The kernel's name of a config's activation (a config's 'gelu' is the erf GELU). */
export const gluOp = (act: GluActivationName): GluActivation => (act === 'gelu' ? 'gelu_erf' : act);

/**
 * act(gate) * up, gate and up of one shape (e.g. the halves of a gate_up projection).
 * @example k.glu(gateProj(x), upProj(x), 'silu')  // SwiGLU
 */
export const glu = (gate: Tensor, up: Tensor, activation: GluActivationName): Tensor => gluFused(gate, up, gluOp(activation));

/** The same from unary + mul (the definition the fused kernel is tested against). */
export const gluComposite = (gate: Tensor, up: Tensor, activation: GluActivationName): Tensor =>
  tidy(() => mul(unary(gluOp(activation), gate), up));
