// Fused softmax / log-softmax over one dim. Equals softmaxComposite / logSoftmaxComposite.
// Backward with y the output and g = dL/dy, per row:
//   softmax:     dx = y * (g - sum(g * y))
//   log-softmax: dx = g - exp(y) * sum(g)
// Half x computes in float32: upcast here, or in the kernel on a halfElementwise backend.
import { backendOf } from '../../backend/index.js';
import { isHalf } from '../../tensor/dtype.js';
import { normDim } from '../../tensor/layout.js';
import { tidy } from '../../tensor/scope.js';
import type { Tensor } from '../../tensor/tensor.js';
import { emptyLike, inputs, needsGrad, record, save } from '../dispatch.js';
import { inKernelCompute } from '../elementwise.js';
import { contiguous, transpose } from '../view.js';

export function softmaxFused(x: Tensor, dim: number, log: boolean): Tensor {
  inputs(log ? 'logSoftmax' : 'softmax', x);
  const d = normDim(dim, x.ndim, 'softmax');
  if (x.ndim > 0 && d !== x.ndim - 1) return tidy(() => transpose(softmaxFused(transpose(x, d, -1), -1, log), d, -1));
  return inKernelCompute(x, (xf) => {
    const xc = contiguous(xf);
    const out = emptyLike(xc);
    const k = backendOf(xc).kernels;
    k.softmax(xc, out, log);
    const name = log ? 'logSoftmax' : 'softmax';
    if (!needsGrad(xf)) {
      xc.dispose();
      return out;
    }
    if (isHalf(xc.dtype)) {
      // half x (halfElementwise): save x, no bigger than y, and recompute y in float32, as the
      // upcast path's backward reads it (a backward from the rounded half y would differ)
      const xs = save(xc);
      xc.dispose();
      return record(name, out, [xf], (g) => {
        const y = emptyLike(xs, xs.shape, 'float32');
        k.softmax(xs, y, log);
        const gc = contiguous(g);
        const dx = emptyLike(gc);
        k.softmaxBackward(y, gc, dx, log);
        y.dispose();
        return [dx];
      }, [xs]);
    }
    xc.dispose();
    const ys = save(out);
    return record(name, out, [xf], (g) => {
      const gc = contiguous(g);
      const dx = emptyLike(gc);
      k.softmaxBackward(ys, gc, dx, log);
      return [dx];
    }, [ys]);
  });
}
