// Flash attention forward and backward on the GPU (native/cuda/kernels/attention.cu and
// attention_backward.cu): float32 q [B,H,Tq,hd], k/v [B,Hkv,Tk,hd(v)] contiguous, the additive mask
// read through its strides, Philox dropout identical to src/backend/ref/attention.ts. Checks
// mirror native/attention.cc's (same messages, prefixed with "cuda"). Head dims up to 256.
import { shapeStr } from '../../../tensor/layout.js';
import type { AttentionOpts, Kernels, View } from '../../kernels.js';
import { cudaContext } from '../context.js';
import { type Params, gridFor, launch, newParams } from '../launch.js';
import { cudaKernel } from '../modules.js';
import { type CudaStorage, scratchStorage } from '../storage.js';

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
const TWO_POW_32 = 4294967296;
const MAX_GRID_YZ = 65535;

interface Problem {
  B: number; H: number; Hkv: number; Tq: number; Tk: number; hd: number; hdv: number; rep: number; dmax: Dmax;
  /** mask strides, 0 on broadcast dims */
  ms: number[];
}

function fail(kernel: string, why: string): never {
  throw new Error(`cuda ${kernel}: ${why}`);
}

function needF32(kernel: string, what: string, t: View): void {
  if (t.dtype !== 'float32') fail(kernel, `${what} must be float32, got ${t.dtype} ${shapeStr(t.layout.shape)}`);
  if (!t.layout.isContiguous()) fail(kernel, `${what} ${shapeStr(t.layout.shape)} must be contiguous`);
}

function needShape(kernel: string, what: string, t: View, shape: number[], ctx: string): void {
  needF32(kernel, what, t);
  const s = t.layout.shape;
  if (s.length !== shape.length || s.some((x, d) => x !== shape[d]))
    fail(kernel, `${what} ${shapeStr(s)} must be ${shapeStr(shape)} (${ctx})`);
}

function checkOpts(kernel: string, o: AttentionOpts): void {
  if (!Number.isFinite(o.scale)) fail(kernel, `scale must be finite, got ${o.scale}`);
  if (!Number.isSafeInteger(o.window) || o.window < 0) fail(kernel, `window must be >= 0, got ${o.window}`);
  if (!(o.softcap >= 0) || !Number.isFinite(o.softcap)) fail(kernel, `softcap must be >= 0, got ${o.softcap}`);
  if (!(o.dropout >= 0 && o.dropout < 1)) fail(kernel, `dropout must be in [0, 1), got ${o.dropout}`);
  if (!Number.isSafeInteger(o.seed) || o.seed < 0 || !Number.isSafeInteger(o.counter) || o.counter < 0)
    fail(kernel, `dropout seed and counter must be non-negative integers, got ${o.seed} and ${o.counter}`);
}

/** Validates q, k, v, the mask and the options (the first arguments of both kernels). */
function problem(kernel: string, q: View, k: View, v: View, mask: View | null, o: AttentionOpts): Problem {
  needF32(kernel, 'q', q);
  needF32(kernel, 'k', k);
  needF32(kernel, 'v', v);
  const [qs, ks, vs] = [q.layout.shape, k.layout.shape, v.layout.shape];
  const ctx = `q ${shapeStr(qs)}, k ${shapeStr(ks)}, v ${shapeStr(vs)}`;
  if (qs.length !== 4 || ks.length !== 4 || vs.length !== 4) fail(kernel, `q, k, v must be [B, H, T, hd]: ${ctx}`);
  const [B, H, Tq, hd] = qs;
  const [, Hkv, Tk] = ks;
  const hdv = vs[3];
  if (ks[0] !== B || vs[0] !== B) fail(kernel, `batch sizes differ: ${ctx}`);
  if (ks[3] !== hd) fail(kernel, `q and k head dims differ: ${ctx}`);
  if (vs[1] !== Hkv || vs[2] !== Tk) fail(kernel, `k and v must agree in heads and length: ${ctx}`);
  if (Hkv < 1 || H % Hkv !== 0) fail(kernel, `query heads must be a multiple of kv heads: ${ctx}`);
  const dmax = DMAX.find((d) => d >= Math.max(hd, hdv));
  if (dmax === undefined) fail(kernel, `head dims above 256 are not supported: ${ctx}`);
  if (B > MAX_GRID_YZ || H > MAX_GRID_YZ) fail(kernel, `at most ${MAX_GRID_YZ} batches and heads: ${ctx}`);
  if (Tq >= 2 ** 31 || Tk >= 2 ** 31) fail(kernel, `sequence lengths must be below 2^31: ${ctx}`);
  let ms = [0, 0, 0, 0];
  if (mask) {
    if (mask.dtype !== 'float32') fail(kernel, `mask must be float32 (additive), got ${mask.dtype}`);
    const m = mask.layout.shape;
    const ok = m.length === 4 && (m[0] === B || m[0] === 1) && (m[1] === H || m[1] === 1) && m[2] === Tq && m[3] === Tk;
    if (!ok) fail(kernel, `mask ${shapeStr(m)} must be [B|1, H|1, Tq, Tk] for ${ctx}`);
    ms = m.map((s, d) => (s === 1 ? 0 : mask.layout.strides[d]));
  }
  checkOpts(kernel, o);
  return { B, H, Hkv, Tq, Tk, hd, hdv, rep: H / Hkv, dmax, ms };
}

const dims = (p: Problem): string => `B=${p.B} H=${p.H} Hkv=${p.Hkv} Tq=${p.Tq} Tk=${p.Tk} hd=${p.hd} hdv=${p.hdv}`;

/** The parameters every attention kernel starts with (KST_ATTN_PARAMS in attention.cuh). */
function problemParams(p: Problem, q: View, k: View, v: View, mask: View | null, o: AttentionOpts): Params {
  const threshold = o.dropout > 0 ? Math.ceil(o.dropout * 16777216) : 0; // keep iff (word >> 8) >= ceil(p 2^24)
  return newParams().view_(q, 'q').view_(k, 'k').view_(v, 'v').view_(mask, 'mask')
    .i64(p.ms[0]).i64(p.ms[1]).i64(p.ms[2]).i64(p.ms[3])
    .i32(p.B).i32(p.H).i32(p.Hkv).i32(p.Tq).i32(p.Tk).i32(p.hd).i32(p.hdv)
    .f32(o.scale).i32(o.causal ? 1 : 0).i64(o.window).f32(o.softcap)
    .u32(o.seed % TWO_POW_32).u32(Math.floor(o.seed / TWO_POW_32)).i64(o.counter).u32(threshold).f32(1 / (1 - o.dropout));
}

/**
 * Query-head shares per kv head in the dk/dv pass: with few (b, kv head, key tile) blocks, each
 * share of a GQA group gets its own block and partial dk/dv, summed after (deterministically).
 * KESTREL_CUDA_ATTN_SPLIT forces a divisor of H / Hkv (tests cover both paths on any machine).
 */
function headSplit(p: Problem, blocks: number): number {
  const forced = process.env.KESTREL_CUDA_ATTN_SPLIT;
  if (forced) {
    const s = Number(forced);
    return Number.isInteger(s) && s >= 1 && p.rep % s === 0 ? s : 1;
  }
  const target = 4 * cudaContext().device.smCount;
  let split = 1;
  for (let d = 2; d <= p.rep && blocks * split < target; d++) if (p.rep % d === 0) split = d;
  return split;
}

const scratch = (numel: number): CudaStorage => scratchStorage(cudaContext().addon, 'float32', Math.max(1, numel));

export const attentionKernels: Pick<Kernels, 'attention' | 'attentionBackward'> = {
  attention(q, k, v, mask, opts, out, lse) {
    const kernel = 'attention';
    const p = problem(kernel, q, k, v, mask, opts);
    needShape(kernel, 'out', out, [p.B, p.H, p.Tq, p.hdv], dims(p));
    needShape(kernel, 'lse', lse, [p.B, p.H, p.Tq], dims(p));
    const t = FORWARD[p.dmax];
    const params = problemParams(p, q, k, v, mask, opts).view_(out, 'out').view_(lse, 'lse');
    launch(cudaKernel('attention', `attention_forward_d${p.dmax}`), params, { grid: [Math.ceil(p.Tq / t.qt), p.H, p.B], block: t.threads });
  },

  attentionBackward(q, k, v, mask, out, lse, dout, opts, dq, dk, dv) {
    const kernel = 'attention_backward';
    const p = problem(kernel, q, k, v, mask, opts);
    const ctx = dims(p);
    needShape(kernel, 'out', out, [p.B, p.H, p.Tq, p.hdv], ctx);
    needShape(kernel, 'lse', lse, [p.B, p.H, p.Tq], ctx);
    needShape(kernel, 'dout', dout, [p.B, p.H, p.Tq, p.hdv], ctx);
    needShape(kernel, 'dq', dq, [p.B, p.H, p.Tq, p.hd], ctx);
    needShape(kernel, 'dk', dk, [p.B, p.Hkv, p.Tk, p.hd], ctx);
    needShape(kernel, 'dv', dv, [p.B, p.Hkv, p.Tk, p.hdv], ctx);
    const t = BACKWARD[p.dmax];
    const rows = p.B * p.H * p.Tq;
    const nkt = Math.ceil(p.Tk / t.nk);
    const split = headSplit(p, p.B * p.Hkv * nkt);
    if (p.Hkv * split > MAX_GRID_YZ) fail(kernel, `at most ${MAX_GRID_YZ} kv heads: ${ctx}`);
    const D = scratch(rows);
    const part = split > 1 ? [scratch(p.B * p.Hkv * split * p.Tk * p.hd), scratch(p.B * p.Hkv * split * p.Tk * p.hdv)] : null;
    try {
      const rd = newParams().view_(out, 'out').view_(dout, 'dout').i64(rows).i64(p.hdv).ptr(D.ptr);
      launch(cudaKernel('attention_backward', 'attention_backward_rowdot'), rd, { grid: gridFor(rows * 32), block: 256 });

      const kv = problemParams(p, q, k, v, mask, opts).view_(dout, 'dout').view_(lse, 'lse').ptr(D.ptr).i32(split);
      if (part) kv.ptr(part[0].ptr).ptr(part[1].ptr);
      else kv.view_(dk, 'dk').view_(dv, 'dv');
      launch(cudaKernel('attention_backward', `attention_backward_dkdv_d${p.dmax}`), kv, { grid: [nkt, p.Hkv * split, p.B], block: t.threads });
      if (part) {
        const sum = cudaKernel('attention_backward', 'attention_backward_sum_heads');
        for (const [buf, dst, w] of [[part[0], dk, p.hd], [part[1], dv, p.hdv]] as const) {
          const n = p.B * p.Hkv * p.Tk * w;
          launch(sum, newParams().ptr(buf.ptr).i32(split).i64(p.B * p.Hkv).i64(p.Tk * w).view_(dst, 'dk/dv'), { grid: gridFor(n), block: 256 });
        }
      }

      const dqp = problemParams(p, q, k, v, mask, opts).view_(dout, 'dout').view_(lse, 'lse').ptr(D.ptr).view_(dq, 'dq');
      launch(cudaKernel('attention_backward', `attention_backward_dq_d${p.dmax}`), dqp, { grid: [Math.ceil(p.Tq / t.qt), p.H, p.B], block: t.threads });
    } finally {
      D.release();
      for (const s of part ?? []) s.release();
    }
  },
};
