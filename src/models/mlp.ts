// The gated MLP of the Llama family (HF LlamaMLP): down(act(gate(x)) * up(x)), with Phi-3's fused
// gate_up_proj. Also each routed and shared expert of Qwen2-MoE (Qwen2MoeMLP, built with the
// expert's intermediate size).
import { narrow } from '../ops/view.js';
import type { Tensor } from '../tensor/tensor.js';
import { Linear, type RMSNorm } from '../nn/layers.js';
import { rmsNormGateUpGlu } from '../ops/fused/rms_norm_gate_up_glu.js';
import { linearResidual } from '../ops/fused/linear_residual.js';
import { add } from '../ops/elementwise.js';
import { mergedDecodeParts } from '../quant/merge_projections.js';
import { Module } from '../nn/module.js';
import type { InitOpts } from '../nn/init.js';
import type { DecoderConfig } from './config.js';
import { glu, gluOp } from '../ops/glu.js';
import { sharedInputProjections } from '../lora/shared_input.js';
import { LoraLinear } from '../lora/lora_linear.js';

export class Mlp extends Module {
  gate_proj?: Linear;
  up_proj?: Linear;
  gate_up_proj?: Linear;
  down_proj: Linear;

  constructor(readonly c: DecoderConfig, init: InitOpts) {
    super();
    const { hiddenSize: D, intermediateSize: F } = c;
    if (c.fusedGateUp) this.gate_up_proj = new Linear(D, 2 * F, { ...init, bias: c.mlpBias });
    else {
      this.gate_proj = new Linear(D, F, { ...init, bias: c.mlpBias });
      this.up_proj = new Linear(D, F, { ...init, bias: c.mlpBias });
    }
    this.down_proj = new Linear(F, D, { ...init, bias: c.mlpBias });
  }

  /**
   * Decoding (no gradients): down(act(gate(norm(x))) * up(norm(x))) (+ residual, summed by the
   * down projection's kernel, linear_residual.ts) with the norm, the merged gate|up projection and
   * the activation in one fused call (rms_norm_gate_up_glu.ts); null where the projections are not
   * plain (LoRA wrappers, mixed formats) or KESTREL_DECODE_FUSION=off.
   */
  fusedForward(x: Tensor, norm: RMSNorm, residual?: Tensor): Tensor | null {
    if (process.env.KESTREL_DECODE_FUSION === 'off') return null;
    const parts = mergedDecodeParts(this, 'gate_up', this.gate_up_proj ? [this.gate_up_proj] : [this.gate_proj!, this.up_proj!]);
    if (!parts) return null;
    const h = rmsNormGateUpGlu(x, { weight: norm.weight, eps: norm.eps, offset: norm.offset }, parts, gluOp(this.c.activation));
    if (!residual) return this.down_proj.forward(h);
    const down = mergedDecodeParts(this, 'down', [this.down_proj]);
    return down ? linearResidual(h, down, residual) : add(residual, this.down_proj.forward(h));
  }

  /** down(act(gate(x)) * up(x)) */
  forward(x: Tensor): Tensor {
    const F = this.c.intermediateSize;
    let gate: Tensor;
    let up: Tensor;
    if (this.gate_up_proj) {
      const gu = this.gate_up_proj.forward(x);
      [gate, up] = [narrow(gu, -1, 0, F), narrow(gu, -1, F, F)];
    } else [gate, up] = sharedInputProjections(x, [this.gate_proj!, this.up_proj!]);
    const act = this.c.activation;
    const h = glu(gate, up, act);
    // a LoRA down_proj rebuilds its input from the gate and up that glu keeps for its own backward,
    // instead of holding the [tokens, intermediate] product too
    const down: Linear | LoraLinear = this.down_proj;
    return down instanceof LoraLinear ? down.forward(h, { recompute: { from: [gate, up], fn: ([g, u]) => glu(g, u, act) } }) : down.forward(h);
  }
}
