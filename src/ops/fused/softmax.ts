// Fused softmax / log-softmax over one dim. Equals softmaxComposite / logSoftmaxComposite.
// Backward with y the output and g = dL/dy, per row:
//   softmax:     dx = y * (g - sum(g * y))
//   log-softmax: dx = g - exp(y) * sum(g)
import { backendOf } from '../../backend/index.js';
import { normDim } from '../../tensor/layout.js';
import { tidy } from '../../tensor/scope.js';
import type { Tensor } from '../../tensor/tensor.js';
import { emptyLike, inputs, needsGrad, record, save } from '../dispatch.js';
import { inCompute } from '../elementwise.js';
import { contiguous, transpose } from '../view.js';

export function softmaxFused(x: Tensor, dim: number, log: boolean): Tensor {
  inputs(log ? 'logSoftmax' : 'softmax', x);
  const d = normDim(dim, x.ndim, 'softmax');
  if (x.ndim > 0 && d !== x.ndim - 1) return tidy(() => transpose(softmaxFused(transpose(x, d, -1), -1, log), d, -1));
  return inCompute(x, (xf) => {
    const xc = contiguous(xf);
    const out = emptyLike(xc);
    const k = backendOf(xc).kernels;
    k.softmax(xc, out, log);
    xc.dispose();
    if (!needsGrad(xf)) return out;
    const ys = save(out);
    return record(log ? 'logSoftmax' : 'softmax', out, [xf], (g) => {
      const gc = contiguous(g);
      const dx = emptyLike(gc);
      k.softmaxBackward(ys, gc, dx, log);
      return [dx];
    }, [ys]);
  });
}
