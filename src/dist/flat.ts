// Flat views of parameter lists, the arithmetic every ZeRO stage shares: parameters (or their
// gradients) laid end to end in one tensor of their dtype, and a flat tensor's elements copied back.
import { backendOf } from '../backend/index.js';
import { zeros } from '../ops/creation.js';
import { cat } from '../ops/indexing.js';
import { narrow, reshape } from '../ops/view.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';

/** Copies a flat tensor's elements into the parameters it was made from (in order). */
export function scatterInto(flat: Tensor, params: readonly Tensor[]): void {
  let at = 0;
  for (const p of params) {
    // tidy: the narrow's handle as well as the reshape's must go, or flat's storage outlives its dispose()
    tidy(() => backendOf(p).kernels.copy(reshape(narrow(flat, 0, at, p.numel), p.shape), p));
    at += p.numel;
  }
}

/** The parameters (or their gradients) as one flat tensor of their dtype (float32 for masters, uint8 for a packed 4-bit base) padded to `length` with zeros. */
export function flatten(tensors: readonly Tensor[], length: number): Tensor {
  return tidy(() => {
    const parts = tensors.map((t) => reshape(t, [-1]));
    const pad = length - tensors.reduce((n, t) => n + t.numel, 0);
    if (pad > 0) parts.push(zeros([pad], { dtype: tensors[0].dtype, backend: tensors[0].backendName }));
    return cat(parts, 0);
  });
}

