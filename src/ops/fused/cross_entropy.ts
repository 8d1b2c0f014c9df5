// Fused log-softmax + NLL per row (equals crossEntropyComposite with reduction 'none').
// With lse = logsumexp(x), p = softmax(x), eps = label smoothing, t the target:
//   loss = (1 - eps)(lse - x_t) + eps (lse - mean(x))
//   dx_j = dloss (p_j - (1 - eps)[j = t] - eps / V);   ignored rows: loss 0, dx 0
// The [N, V] probabilities are never stored: backward recomputes them from x and lse.
import { backendOf } from '../../backend/index.js';
import type { CrossEntropyOpts } from '../../backend/kernels.js';
import type { Tensor } from '../../tensor/tensor.js';
import { emptyLike, inputs, needsGrad, record, save } from '../dispatch.js';
import { inCompute } from '../elementwise.js';
import { contiguous } from '../view.js';

/** Per-row losses [N] of logits [N, V] against int64 targets [N]. */
export function crossEntropyRows(logits: Tensor, target: Tensor, opts: CrossEntropyOpts): Tensor {
  inputs('crossEntropy', logits, target);
  return inCompute(logits, (lf) => {
    const lc = contiguous(lf);
    const tc = contiguous(target);
    const N = lc.shape[0];
    const loss = emptyLike(lc, [N]);
    const lse = emptyLike(lc, [N]);
    const k = backendOf(lc).kernels;
    k.crossEntropy(lc, tc, opts, loss, lse);
    if (!needsGrad(lf)) {
      for (const t of [lc, tc, lse]) t.dispose();
      return loss;
    }
    const [ls, ts, zs] = [save(lc), save(tc), save(lse)];
    for (const t of [lc, tc, lse]) t.dispose();
    return record('crossEntropy', loss, [lf], (g) => {
      const gc = contiguous(g);
      const dx = emptyLike(ls);
      k.crossEntropyBackward(ls, ts, zs, gc, opts, dx);
      return [dx];
    }, [ls, ts, zs]);
  });
}
