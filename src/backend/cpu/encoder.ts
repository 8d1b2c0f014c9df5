// The CPU backend's encoder-layer kernels (EncoderKernels): one packed call each into
// native/encoder_fused.cc, in the order its kernels read their arguments.
import { type EncoderKernels, GLU_ACTIVATIONS, type View } from '../kernels.js';
import type { NativeView, Packer } from './native.js';

export function makeEncoderKernels(p: Packer, nv: (v: View | null) => NativeView | null): EncoderKernels {
  const act = (a: (typeof GLU_ACTIVATIONS)[number]): number => GLU_ACTIVATIONS.indexOf(a);
  return {
    dtypes: ['float32'],
    addLayerNorm: (x, r, w, b, eps, out, sum, mean, rstd) =>
      p.view(nv(x)).view(nv(r)).view(nv(w)).view(nv(b)).num(eps).view(nv(out)).view(nv(sum)).view(nv(mean)).view(nv(rstd)).call('add_layer_norm'),
    biasGelu: (a, z, out) => p.num(act(a)).view(nv(z)).view(nv(out)).call('bias_gelu'),
    biasGeluBackward: (a, z, dy, dz, db) => p.num(act(a)).view(nv(z)).view(nv(dy)).view(nv(dz)).view(nv(db)).call('bias_gelu_backward'),
  };
}
