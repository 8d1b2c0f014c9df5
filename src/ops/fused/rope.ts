// Fused rotary embedding (equals ropeComposite). A rotation is orthogonal, so the backward
// is the same kernel rotating the gradient by -theta: dx = rope(g, cos, -sin).
import { backendOf } from '../../backend/index.js';
import { shapeStr } from '../../tensor/layout.js';
import type { Tensor } from '../../tensor/tensor.js';
import { emptyLike, inputs, needsGrad, record, save } from '../dispatch.js';
import { inCompute, to } from '../elementwise.js';
import { contiguous } from '../view.js';

export function ropeFused(x: Tensor, cos: Tensor, sin: Tensor, interleaved: boolean): Tensor {
  inputs('rope', x, cos, sin);
  const [B, , T, hd] = x.shape;
  const ok = x.ndim === 4 && hd % 2 === 0 && cos.ndim === 3 && (cos.shape[0] === B || cos.shape[0] === 1) &&
    cos.shape[1] === T && cos.shape[2] === hd / 2 && sin.shape.every((s, i) => s === cos.shape[i]);
  if (!ok)
    throw new Error(`rope: x ${shapeStr(x.shape)} must be [B, H, T, hd] with cos/sin [B|1, T, hd/2], got cos ${shapeStr(cos.shape)}, sin ${shapeStr(sin.shape)}`);
  return inCompute(x, (xf) => {
    const xc = contiguous(xf);
    const c = contiguous(cos.dtype === xc.dtype ? cos : to(cos, xc.dtype));
    const s = contiguous(sin.dtype === xc.dtype ? sin : to(sin, xc.dtype));
    const out = emptyLike(xc);
    const k = backendOf(xc).kernels;
    k.rope(xc, c, s, out, { interleaved, inverse: false });
    xc.dispose();
    if (!needsGrad(xf)) {
      c.dispose();
      s.dispose();
      return out;
    }
    const [cs, ss] = [save(c), save(s)];
    c.dispose();
    s.dispose();
    return record('rope', out, [xf], (g) => {
      const gc = contiguous(g);
      const dx = emptyLike(gc);
      k.rope(gc, cs, ss, dx, { interleaved, inverse: true });
      return [dx];
    }, [cs, ss]);
  });
}
