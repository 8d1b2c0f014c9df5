// What the fused decode ops (rms_norm_qkv_rope.ts, rms_norm_gate_up_glu.ts) share: a projection
// given as parts (one merged weight, or the float weights apart), the RMSNorm in front of it,
// their checks, the test of whether the backend's fused kernel can take the operands, and the
// composite's first half (norm, then each part's product and bias).
import { backendOf, withLayout } from '../../backend/index.js';
import type { DecodeKernels, QkvPart, View } from '../../backend/kernels.js';
import { autocastDtype } from '../../tensor/autocast.js';
import { Layout, shapeStr } from '../../tensor/layout.js';
import { Tensor } from '../../tensor/tensor.js';
import { inputs, needsGrad } from '../dispatch.js';
import { add } from '../elementwise.js';
import { linear } from '../matmul.js';
import { rmsNorm } from '../norm.js';
import { contiguous } from '../view.js';
import { type QuantTensors, quantLinear } from './quant_linear.js';

/** One block of a projection's output rows: a float weight [N, K] or a quantized one, and its bias [N]. */
export interface DecodePart {
  weight: Tensor | QuantTensors;
  bias: Tensor | null;
}

/** The RMSNorm in front of the projection (the layer's input or post-attention norm). */
export interface RmsNormParams {
  weight: Tensor | null;
  eps: number;
  offset: number;
}

export const partOutFeatures = (p: DecodePart): number => (p.weight instanceof Tensor ? p.weight.shape[0] : p.weight.N);

/** Registers the operands with the dispatcher, checks the parts against x [B, T, D], refuses gradients; returns N. */
export function checkDecodeOperands(op: string, where: string, x: Tensor, norm: RmsNormParams, parts: readonly DecodePart[], more: Tensor[]): number {
  const tensors = [norm.weight, ...more, ...parts.flatMap((p) => (p.weight instanceof Tensor ? [p.weight, p.bias] : [p.weight.data, p.weight.scales, p.weight.code, p.bias]))];
  inputs(op, x, ...tensors);
  if (x.ndim !== 3) throw new Error(`${where}: x must be [B, T, D]`);
  for (const p of parts) {
    const K = p.weight instanceof Tensor ? p.weight.shape[1] : p.weight.K;
    if (K !== x.shape[2]) throw new Error(`${where}: a weight part takes ${K} input features, x has ${x.shape[2]}`);
    if (p.bias && (p.bias.ndim !== 1 || p.bias.shape[0] !== partOutFeatures(p))) throw new Error(`${where}: bias ${shapeStr(p.bias.shape)} must be [${partOutFeatures(p)}]`);
  }
  if (needsGrad(x, ...tensors)) throw new Error(`${op}: decode-only (no backward); call it under noGrad or use ${op}Composite`);
  return parts.reduce((n, p) => n + partOutFeatures(p), 0);
}

/** The backend's decode kernels when they take these operands (float32 throughout, rows within the GEMV's limit), else null. */
export function decodeKernelsFor(x: Tensor, norm: RmsNormParams, parts: readonly DecodePart[], more: Tensor[]): DecodeKernels | null {
  const kernels = backendOf(x).decode;
  if (!kernels || autocastDtype()) return null;
  const f32 = (t: Tensor | null): boolean => !t || t.dtype === 'float32';
  if (![x, norm.weight, ...more].every(f32) || !parts.every((p) => f32(p.bias) && (!(p.weight instanceof Tensor) || f32(p.weight)))) return null;
  const quantized = parts.some((p) => !(p.weight instanceof Tensor));
  return quantized && x.numel / x.shape[2] > kernels.maxQuantRows ? null : kernels;
}

/** t seen as the [rows, cols] matrix a kernel takes (t contiguous). */
export const asRows = (t: Tensor, rows: number, cols: number): View => withLayout(t, new Layout([rows, cols], undefined, t.layout.offset));

/** The parts as the kernel takes them (float weights made contiguous: call inside a tidy). */
export const kernelParts = (parts: readonly DecodePart[]): QkvPart[] =>
  parts.map((p) => (p.weight instanceof Tensor ? { weight: contiguous(p.weight), bias: p.bias } : { quant: p.weight, bias: p.bias }));

/** x [B, T, D] as the kernel's contiguous [B T, D] rows (call inside a tidy). */
export const xRows = (x: Tensor): View => asRows(contiguous(x), x.numel / x.shape[2], x.shape[2]);

/** The composite's first half: RMSNorm(x) (or x itself: norm null) times each part, plus its bias ([B, T, N_i] each). */
export function normProject(x: Tensor, norm: RmsNormParams | null, parts: readonly DecodePart[]): Tensor[] {
  const xn = norm ? rmsNorm(x, norm.weight, { eps: norm.eps, offset: norm.offset }) : x;
  // as Linear.forward and QuantLinear.forward compute them: the float product onto its bias, the quantized one plus it
  return parts.map((p) => {
    if (p.weight instanceof Tensor) return linear(xn, p.weight, p.bias);
    const y = quantLinear(xn, p.weight);
    return p.bias ? add(y, p.bias) : y;
  });
}
