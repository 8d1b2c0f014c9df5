// Cross-entropy on the GPU (native/cuda/kernels/loss.cu), checked as native/nn.cc checks it. The
// targets live on the device, so their range check is a small kernel whose verdict (the first bad
// row and its target, 16 bytes) is read back before the loss kernel is launched: an out-of-range
// target is the CPU backend's error, thrown before anything is written. The read waits for the
// stream; the loss kernels themselves never index memory with a target.
import type { CrossEntropyOpts, Kernels, View } from '../../kernels.js';
import { dims } from '../checks.js';
import { cudaContext } from '../context.js';
import { launch, newParams } from '../launch.js';
import { cudaKernel } from '../modules.js';
import { scratchStorage } from '../storage.js';
import { needF32, needSame, needVec, rowLaunch } from './rows.js';

interface Checked {
  N: number;
  V: number;
}

/** logits [N, V] float32 and contiguous int64 targets [N] (their values: checkTargets). */
function check(k: string, logits: View, target: View, o: CrossEntropyOpts): Checked {
  needF32(k, 'logits', logits);
  const ls = logits.layout.shape;
  if (ls.length !== 2) throw new Error(`cuda ${k}: logits ${dims(ls)} must be [N, V]`);
  if (target.dtype !== 'int64' || !target.layout.isContiguous())
    throw new Error(`cuda ${k}: target must be contiguous int64, got ${target.dtype} ${dims(target.layout.shape)}`);
  const [N, V] = ls;
  if (target.layout.numel !== N)
    throw new Error(`cuda ${k}: target ${dims(target.layout.shape)} must have N = ${N} elements (logits ${dims(ls)})`);
  if (!Number.isSafeInteger(o.ignoreIndex)) throw new Error(`cuda ${k}: ignoreIndex must be an integer, got ${o.ignoreIndex}`);
  return { N, V };
}

/** Throws unless every target is in [0, V) or ignoreIndex, naming the first bad one and its row (as the CPU does). */
function checkTargets(k: string, target: View, N: number, V: number, ignore: number): void {
  const addon = cudaContext().addon;
  const bad = scratchStorage(addon, 'int64', 2);
  try {
    const p = newParams().view_(target, 'target').i64(N).i64(V).i64(ignore).ptr(bad.ptr);
    launch(cudaKernel('loss', 'check_targets_i64'), p, { grid: 1, block: Math.min(1024, Math.ceil(N / 32) * 32) });
    const verdict = new BigInt64Array(2);
    addon.cudaRead(bad.ptr, 0, verdict);
    if (verdict[0] >= 0n)
      throw new Error(`cuda ${k}: target ${verdict[1]} at row ${verdict[0]} is out of range for ${V} classes (and is not ignoreIndex ${ignore})`);
  } finally {
    bad.release();
  }
}

export const lossKernels: Pick<Kernels, 'crossEntropy' | 'crossEntropyBackward'> = {
  crossEntropy(logits, target, opts, loss, lse) {
    const k = 'cross_entropy';
    const { N, V } = check(k, logits, target, opts);
    needVec(k, 'loss', loss, N);
    needVec(k, 'lse', lse, N);
    if (N === 0) return;
    checkTargets(k, target, N, V, opts.ignoreIndex);
    const l = rowLaunch(N, V);
    const p = newParams().view_(logits, 'logits').view_(target, 'target').i64(opts.ignoreIndex).f32(opts.labelSmoothing)
      .view_(loss, 'loss').view_(lse, 'lse').i64(N).i64(V);
    launch(cudaKernel('loss', `cross_entropy_${l.form}_f32`), p, l);
  },
  crossEntropyBackward(logits, target, lse, dloss, opts, dlogits) {
    const k = 'cross_entropy_backward';
    const { N, V } = check(k, logits, target, opts);
    needVec(k, 'lse', lse, N);
    needVec(k, 'dloss', dloss, N);
    needSame(k, 'dlogits', dlogits, logits);
    if (N === 0) return;
    checkTargets(k, target, N, V, opts.ignoreIndex);
    if (V === 0) return;
    const l = rowLaunch(N, V);
    const p = newParams().view_(logits, 'logits').view_(target, 'target').view_(lse, 'lse').view_(dloss, 'dloss')
      .i64(opts.ignoreIndex).f32(opts.labelSmoothing).view_(dlogits, 'dlogits').i64(N).i64(V);
    launch(cudaKernel('loss', `cross_entropy_backward_${l.form}_f32`), p, l);
  },
};
