// The fused AdamW step on the GPU (native/cuda/kernels/optim.cu): param, exp_avg and exp_avg_sq
// updated in place, checked as native/optim.cc checks them (contiguous float32, one size). A group
// of several tensors is one launch: a table of their addresses and a chunk map, uploaded per step.
import type { AdamWStep, AdamWTensors, Kernels, View } from '../../kernels.js';
import { dims } from '../checks.js';
import { cudaContext } from '../context.js';
import { devicePointer, gridFor, launch, newParams } from '../launch.js';
import { cudaKernel } from '../modules.js';
import { scratchStorage } from '../storage.js';

/** Elements per block of the multi-tensor kernel. */
const CHUNK = 65536;

function checkSame(v: View, like: View, what: string): void {
  if (v.dtype !== 'float32' || !v.layout.isContiguous() || v.layout.numel !== like.layout.numel)
    throw new Error(`cuda adamw: ${what} must be a contiguous float32 tensor of ${like.layout.numel} elements, got ${v.dtype} ${dims(v.layout.shape)}`);
}

function check(t: AdamWTensors): void {
  checkSame(t.param, t.param, 'param');
  checkSame(t.grad, t.param, 'grad');
  checkSame(t.expAvg, t.param, 'exp_avg');
  checkSame(t.expAvgSq, t.param, 'exp_avg_sq');
}

const hyper = (p: ReturnType<typeof newParams>, s: AdamWStep) =>
  p.f32(s.lr).f32(s.beta1).f32(s.beta2).f32(s.eps).f32(s.weightDecay).f32(s.bc1).f32(s.bc2);

function one(t: AdamWTensors, s: AdamWStep): void {
  const n = t.param.layout.numel;
  const p = newParams().view_(t.param, 'param').view_(t.grad, 'grad').view_(t.expAvg, 'exp_avg').view_(t.expAvgSq, 'exp_avg_sq').i64(n);
  launch(cudaKernel('optim', 'adamw_f32'), hyper(p, s), { grid: gridFor(n), block: 256 });
}

/** Every tensor in one launch: the address table and chunk map go up in one upload. */
function many(ts: readonly AdamWTensors[], s: AdamWStep): void {
  const chunks: number[] = [];
  ts.forEach((t, i) => {
    for (let e = 0; e < t.param.layout.numel; e += CHUNK) chunks.push(i, e);
  });
  const words = 5 * ts.length + chunks.length;
  const table = new BigInt64Array(words);
  ts.forEach((t, i) => {
    const ptrs = [devicePointer(t.param, 'param'), devicePointer(t.grad, 'grad'), devicePointer(t.expAvg, 'exp_avg'), devicePointer(t.expAvgSq, 'exp_avg_sq'), t.param.layout.numel];
    ptrs.forEach((x, j) => (table[5 * i + j] = BigInt(x)));
  });
  chunks.forEach((x, j) => (table[5 * ts.length + j] = BigInt(x)));
  const { addon } = cudaContext();
  const buf = scratchStorage(addon, 'int64', words);
  try {
    addon.cudaWrite(buf.ptr, 0, table);
    const p = newParams().ptr(buf.ptr).ptr(buf.ptr + 8 * 5 * ts.length).i64(CHUNK);
    launch(cudaKernel('optim', 'adamw_multi_f32'), hyper(p, s), { grid: chunks.length / 2, block: 256 });
  } finally {
    buf.release(); // queued work keeps its place: the allocator reuses the block only for later work
  }
}

export const optimKernels: Pick<Kernels, 'adamw'> = {
  adamw(tensors, s) {
    for (const t of tensors) check(t);
    const live = tensors.filter((t) => t.param.layout.numel > 0);
    if (live.length === 1) one(live[0], s);
    else if (live.length > 1) many(live, s);
  },
};
