// Fused rotary embedding (equals ropeComposite). A rotation is orthogonal, so the backward
// is the same kernel rotating the gradient by -theta: dx = rope(g, cos, -sin).
// In place where autograd allows it (the kernel reads each pair before writing it): forward
// rotates the contiguous copy it had to make of a strided input (q/k heads are transposed views)
// instead of allocating a second buffer, and backward rotates the incoming gradient in its own
// buffer when nothing else holds it (ownsStorage). The input itself, a saved tensor or a shared
// gradient is never written. Half x computes in float32: upcast here, or in the kernel on a
// halfElementwise backend (x and the gradients stay half, the cos/sin tables float32).
import { backendOf } from '../../backend/index.js';
import { isHalf } from '../../tensor/dtype.js';
import { noGrad } from '../../tensor/grad_mode.js';
import { shapeStr } from '../../tensor/layout.js';
import type { Tensor } from '../../tensor/tensor.js';
import { type InPlaceOpts, emptyLike, inputs, needsGrad, ownsStorage, record, save } from '../dispatch.js';
import { inKernelCompute, to } from '../elementwise.js';
import { contiguous } from '../view.js';

export function ropeFused(x: Tensor, cos: Tensor, sin: Tensor, interleaved: boolean, opts: InPlaceOpts = {}): Tensor {
  inputs('rope', x, cos, sin);
  const inPlace = opts.inPlace ?? true;
  const [B, , T, hd] = x.shape;
  const ok = x.ndim === 4 && hd % 2 === 0 && cos.ndim === 3 && (cos.shape[0] === B || cos.shape[0] === 1) &&
    cos.shape[1] === T && cos.shape[2] === hd / 2 && sin.shape.every((s, i) => s === cos.shape[i]);
  if (!ok)
    throw new Error(`rope: x ${shapeStr(x.shape)} must be [B, H, T, hd] with cos/sin [B|1, T, hd/2], got cos ${shapeStr(cos.shape)}, sin ${shapeStr(sin.shape)}`);
  return inKernelCompute(x, (xf) => {
    // the copy needs no tape node: rope's backward does not read x
    const xc = noGrad(() => contiguous(xf));
    // the tables in x's compute dtype (float32 beside a half x the kernel takes: halfElementwise)
    const td = isHalf(xc.dtype) ? 'float32' : xc.dtype;
    const c = contiguous(cos.dtype === td ? cos : to(cos, td));
    const s = contiguous(sin.dtype === td ? sin : to(sin, td));
    const own = inPlace && xc.storage !== xf.storage && ownsStorage(xc);
    const out = own ? xc : emptyLike(xc);
    const k = backendOf(xc).kernels;
    k.rope(xc, c, s, out, { interleaved, inverse: false });
    if (!own) xc.dispose();
    if (!needsGrad(xf)) {
      c.dispose();
      s.dispose();
      return out;
    }
    const [cs, ss] = [save(c), save(s)];
    c.dispose();
    s.dispose();
    return record('rope', out, [xf], (g) => {
      const mine = inPlace && ownsStorage(g);
      const gc = mine ? g : contiguous(g);
      const dx = mine ? g : emptyLike(gc);
      k.rope(gc, cs, ss, dx, { interleaved, inverse: true });
      return [dx];
    }, [cs, ss]);
  });
}
