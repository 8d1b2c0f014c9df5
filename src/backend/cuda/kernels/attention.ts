// Flash attention forward and backward on the GPU. float32 q [B,H,Tq,hd], k/v [B,Hkv,Tk,hd(v)]
// run the SIMT kernels (native/cuda/kernels/attention.cu and attention_backward.cu); bfloat16 /
// float16 ones run on tensor cores (attention_tc.ts) where the head dims are multiples of 8, else
// through float32 copies. A forward of one query position without dropout (a decode step) runs
// the split-key kernels of attention_decode.cu in any of the three dtypes
// (KESTREL_CUDA_DECODE_ATTENTION=0: the tile kernels, as before them). The additive float32 mask is read through its strides, Philox dropout is
// identical to src/backend/ref/attention.ts. Head dims up to 256.
import { Layout } from '../../../tensor/layout.js';
import type { AttentionOpts, Kernels, View } from '../../kernels.js';
import { cudaContext } from '../context.js';
import { devicePointer, gridFor, launch, newParams } from '../launch.js';
import { cudaKernel } from '../modules.js';
import { type CudaStorage, scratchStorage } from '../storage.js';
import { type AttnProblem, MAX_GRID_YZ, attnProblem, checkBackwardArgs, checkForwardOutputs, dims, fail, headSplit, problemParams } from './attention_args.js';
import { tcBackward, tcForward, tcSupports } from './attention_tc.js';
import { copyKernels } from './copy.js';

/** Tiles per head-dim bound, as the .cu files' Fwd* / Bwd* typedefs (queries and keys per tile, threads). */
const DMAX = [32, 64, 128, 256] as const;
type Dmax = (typeof DMAX)[number];
const FORWARD: Record<Dmax, { qt: number; threads: number }> = {
  32: { qt: 32, threads: 128 }, 64: { qt: 32, threads: 128 }, 128: { qt: 32, threads: 128 }, 256: { qt: 16, threads: 64 },
};
const BACKWARD: Record<Dmax, { qt: number; nk: number; threads: number }> = {
  32: { qt: 32, nk: 32, threads: 128 }, 64: { qt: 32, nk: 32, threads: 128 },
  128: { qt: 16, nk: 16, threads: 128 }, 256: { qt: 8, nk: 8, threads: 64 },
};

/** Threads of a decode block (DEC_THREADS: 4 warps, each scoring 32 keys at a time). */
const DECODE_THREADS = 128;
const DECODE_NAMES = { float32: 'f32', bfloat16: 'bf16', float16: 'f16' } as const;

/**
 * How many shares of the keys a decode step splits into: enough (b, head, share) blocks for two
 * per SM, each share at least a chunk of 32 keys for every warp. KESTREL_CUDA_DECODE_SPLITS forces
 * a count (tests cover one share and several on any machine).
 */
export function decodeSplits(p: AttnProblem, keys: number): number {
  const most = Math.max(1, Math.min(Math.ceil(keys / 32), MAX_GRID_YZ));
  const forced = Number(process.env.KESTREL_CUDA_DECODE_SPLITS);
  if (Number.isInteger(forced) && forced >= 1) return Math.min(forced, most);
  const want = Math.ceil((2 * cudaContext().device.smCount) / (p.B * p.H));
  return Math.max(1, Math.min(want, most, Math.ceil(keys / DECODE_THREADS)));
}

/** One query position, no dropout: a block per (head, batch, share of the keys), then a merge of the shares. */
function decodeForward(p: AttnProblem, q: View, k: View, v: View, mask: View | null, opts: AttentionOpts, out: View, lse: View): void {
  const name = DECODE_NAMES[p.dtype];
  // the query sees keys [lo, Tk) (a sliding window starts lo past 0): the shares divide those
  const keys = p.Tk - (opts.window > 0 ? Math.max(0, p.Tk - opts.window) : 0);
  const want = decodeSplits(p, keys);
  const per = Math.max(32, Math.ceil(Math.ceil(keys / want) / 32) * 32);
  const splits = Math.max(1, Math.ceil(keys / per));
  // key rows read in 16-byte pieces where they are whole pieces from a 16-byte aligned start
  const bytes = p.dtype === 'float32' ? 4 : 2;
  const vec = (p.hd * bytes) % 16 === 0 && (k.layout.numel === 0 || devicePointer(k) % 16 === 0) ? 1 : 0;
  const part = splits > 1 ? [scratch(p.B * p.H * splits * p.hdv), scratch(p.B * p.H * splits * 2)] : null;
  try {
    const params = problemParams(p, q, k, v, mask, opts).view_(out, 'out').view_(lse, 'lse')
      .ptr(part ? part[0].ptr : 0).ptr(part ? part[1].ptr : 0).i64(per).i32(splits).i32(vec);
    launch(cudaKernel('attention_decode', `attention_decode_${name}`), params, { grid: [p.H, p.B, splits], block: DECODE_THREADS });
    if (part) {
      const merge = newParams().ptr(part[0].ptr).ptr(part[1].ptr).i32(splits).i64(p.hdv).view_(out, 'out').view_(lse, 'lse');
      launch(cudaKernel('attention_decode', `attention_decode_merge_${name}`), merge, { grid: [p.H, p.B, 1], block: DECODE_THREADS });
    }
  } finally {
    for (const s of part ?? []) s.release();
  }
}

const dmaxOf = (p: AttnProblem): Dmax => DMAX.find((d) => d >= Math.max(p.hd, p.hdv)) ?? 256;
const scratch = (numel: number): CudaStorage => scratchStorage(cudaContext().addon, 'float32', Math.max(1, numel));

function simtForward(p: AttnProblem, q: View, k: View, v: View, mask: View | null, opts: AttentionOpts, out: View, lse: View): void {
  const dmax = dmaxOf(p);
  const t = FORWARD[dmax];
  const params = problemParams(p, q, k, v, mask, opts).view_(out, 'out').view_(lse, 'lse');
  launch(cudaKernel('attention', `attention_forward_d${dmax}`), params, { grid: [Math.ceil(p.Tq / t.qt), p.H, p.B], block: t.threads });
}

function simtBackward(
  p: AttnProblem, q: View, k: View, v: View, mask: View | null, out: View, lse: View, dout: View, opts: AttentionOpts,
  dq: View, dk: View, dv: View,
): void {
  const kernel = 'attention_backward';
  const dmax = dmaxOf(p);
  const t = BACKWARD[dmax];
  const rows = p.B * p.H * p.Tq;
  const nkt = Math.ceil(p.Tk / t.nk);
  const split = headSplit(p, p.B * p.Hkv * nkt);
  if (p.Hkv * split > MAX_GRID_YZ) fail(kernel, `at most ${MAX_GRID_YZ} kv heads: ${dims(p)}`);
  const D = scratch(rows);
  const part = split > 1 ? [scratch(p.B * p.Hkv * split * p.Tk * p.hd), scratch(p.B * p.Hkv * split * p.Tk * p.hdv)] : null;
  try {
    const rd = newParams().view_(out, 'out').view_(dout, 'dout').i64(rows).i64(p.hdv).ptr(D.ptr);
    launch(cudaKernel('attention_backward', 'attention_backward_rowdot'), rd, { grid: gridFor(rows * 32), block: 256 });

    const kv = problemParams(p, q, k, v, mask, opts).view_(dout, 'dout').view_(lse, 'lse').ptr(D.ptr).i32(split);
    if (part) kv.ptr(part[0].ptr).ptr(part[1].ptr);
    else kv.view_(dk, 'dk').view_(dv, 'dv');
    launch(cudaKernel('attention_backward', `attention_backward_dkdv_d${dmax}`), kv, { grid: [nkt, p.Hkv * split, p.B], block: t.threads });
    if (part) {
      const sum = cudaKernel('attention_backward', 'attention_backward_sum_heads');
      for (const [buf, dst, w] of [[part[0], dk, p.hd], [part[1], dv, p.hdv]] as const) {
        const n = p.B * p.Hkv * p.Tk * w;
        launch(sum, newParams().ptr(buf.ptr).i32(split).i64(p.B * p.Hkv).i64(p.Tk * w).view_(dst, 'dk/dv'), { grid: gridFor(n), block: 256 });
      }
    }

    const dqp = problemParams(p, q, k, v, mask, opts).view_(dout, 'dout').view_(lse, 'lse').ptr(D.ptr).view_(dq, 'dq');
    launch(cudaKernel('attention_backward', `attention_backward_dq_d${dmax}`), dqp, { grid: [Math.ceil(p.Tq / t.qt), p.H, p.B], block: t.threads });
  } finally {
    D.release();
    for (const s of part ?? []) s.release();
  }
}

/**
 * Runs f on float32 copies of `inputs` and of `outputs` (contiguous views of the same shapes),
 * then copies the float32 outputs into `outputs` (the path of 16-bit shapes the tensor-core
 * kernels do not take).
 */
function viaFloat32(inputs: View[], outputs: View[], f: (ins: View[], outs: View[]) => void): void {
  const temps: CudaStorage[] = [];
  const f32 = (v: View): View => {
    const s = scratch(v.layout.numel);
    temps.push(s);
    return { storage: s, layout: new Layout(v.layout.shape), dtype: 'float32' };
  };
  try {
    const ins = inputs.map((v) => {
      const c = f32(v);
      copyKernels.copy(v, c);
      return c;
    });
    const outs = outputs.map(f32);
    f(ins, outs);
    outs.forEach((o, i) => copyKernels.copy(o, outputs[i]));
  } finally {
    for (const s of temps) s.release();
  }
}

export const attentionKernels: Pick<Kernels, 'attention' | 'attentionBackward'> = {
  attention(q, k, v, mask, opts, out, lse) {
    const kernel = 'attention';
    const p = attnProblem(kernel, q, k, v, mask, opts);
    checkForwardOutputs(kernel, p, out, lse, p.dtype);
    if (p.Tq === 1 && opts.dropout === 0 && process.env.KESTREL_CUDA_DECODE_ATTENTION !== '0') decodeForward(p, q, k, v, mask, opts, out, lse);
    else if (p.dtype === 'float32') simtForward(p, q, k, v, mask, opts, out, lse);
    else if (tcSupports(p, [q, k, v, out], mask, opts, false)) tcForward(p, q, k, v, mask, opts, out, lse);
    else viaFloat32([q, k, v], [out], ([q32, k32, v32], [o32]) => simtForward({ ...p, dtype: 'float32' }, q32, k32, v32, mask, opts, o32, lse));
  },

  attentionBackward(q, k, v, mask, out, lse, dout, opts, dq, dk, dv) {
    const kernel = 'attention_backward';
    const p = attnProblem(kernel, q, k, v, mask, opts);
    checkBackwardArgs(kernel, p, { out, lse, dout, dq, dk, dv }, p.dtype);
    if (p.dtype === 'float32') simtBackward(p, q, k, v, mask, out, lse, dout, opts, dq, dk, dv);
    else if (tcSupports(p, [q, k, v, out, dout, dq, dk, dv], mask, opts, true)) tcBackward(p, q, k, v, mask, out, lse, dout, opts, dq, dk, dv);
    else
      viaFloat32([q, k, v, out, dout], [dq, dk, dv], ([q32, k32, v32, o32, do32], [dq32, dk32, dv32]) =>
        simtBackward({ ...p, dtype: 'float32' }, q32, k32, v32, mask, o32, lse, do32, opts, dq32, dk32, dv32));
  },
};
