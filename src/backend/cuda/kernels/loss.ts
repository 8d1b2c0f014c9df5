// Cross-entropy on the GPU (native/cuda/kernels/loss.cu), checked as native/nn.cc checks it. The
// targets live on the device, so their range check is a small kernel that records the first bad
// one in the device error record (index_errors.ts): it is reported, with the CPU's wording, at the
// next host read, so a training step never waits for the GPU here. The loss kernels never index
// memory with a target.
import type { CrossEntropyOpts, Kernels, View } from '../../kernels.js';
import { dims } from '../checks.js';
import { afterIndexLaunch, indexErrorSlot, indexOpCode } from '../index_errors.js';
import { launch, newParams } from '../launch.js';
import { cudaKernel } from '../modules.js';
import { needF32, needSame, needVec, rowLaunch } from './rows.js';

interface Checked {
  N: number;
  V: number;
}

/** logits [N, V] float32 and contiguous int64 targets [N] (their values: checkTargets). */
function check(k: 'cross_entropy' | 'cross_entropy_backward', logits: View, target: View, o: CrossEntropyOpts): Checked {
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

/** Queues the range check of the targets (reported at the next read when one is outside [0, V) and not ignoreIndex). */
function checkTargets(k: 'cross_entropy' | 'cross_entropy_backward', target: View, N: number, V: number, ignore: number): void {
  const slot = indexErrorSlot(target.layout.shape);
  const p = newParams().view_(target, 'target').i64(N).i64(V).i64(ignore).ptr(slot.ptr).i64(indexOpCode(k)).i64(slot.id);
  launch(cudaKernel('loss', 'check_targets_i64'), p, { grid: 1, block: Math.min(1024, Math.ceil(N / 32) * 32) });
  afterIndexLaunch();
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
