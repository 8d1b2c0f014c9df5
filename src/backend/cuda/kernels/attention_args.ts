// What the CUDA attention launches share (attention.ts: float32 SIMT; attention_tc.ts: bfloat16 /
// float16 on tensor cores): the argument checks, which mirror native/attention.cc's (same
// messages, prefixed with "cuda"), the parameters every kernel starts with (KST_ATTN_PARAMS in
// native/cuda/kernels/attention.cuh) and the split of GQA's dk/dv pass over query heads.
import type { DType } from '../../../tensor/dtype.js';
import { shapeStr } from '../../../tensor/layout.js';
import type { AttentionOpts, View } from '../../kernels.js';
import { cudaContext } from '../context.js';
import { type Params, newParams } from '../launch.js';

/** The dtypes q, k, v may have; out, dout, dq, dk, dv have q's, lse and the mask are float32. */
export type AttnDType = 'float32' | 'bfloat16' | 'float16';
const ATTN_DTYPES: readonly DType[] = ['float32', 'bfloat16', 'float16'];
const TWO_POW_32 = 4294967296;
export const MAX_GRID_YZ = 65535;
export const MAX_HEAD_DIM = 256;

export interface AttnProblem {
  B: number; H: number; Hkv: number; Tq: number; Tk: number; hd: number; hdv: number; rep: number;
  dtype: AttnDType;
  /** mask strides, 0 on broadcast dims */
  ms: number[];
}

export function fail(kernel: string, why: string): never {
  throw new Error(`cuda ${kernel}: ${why}`);
}

function needContiguous(kernel: string, what: string, t: View): void {
  if (!t.layout.isContiguous()) fail(kernel, `${what} ${shapeStr(t.layout.shape)} must be contiguous`);
}

/** Contiguous, of `dtype`, with this shape. */
export function needShape(kernel: string, what: string, t: View, shape: number[], ctx: string, dtype: AttnDType): void {
  if (t.dtype !== dtype) fail(kernel, `${what} must be ${dtype}, got ${t.dtype} ${shapeStr(t.layout.shape)}`);
  needContiguous(kernel, what, t);
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
export function attnProblem(kernel: string, q: View, k: View, v: View, mask: View | null, o: AttentionOpts): AttnProblem {
  if (!ATTN_DTYPES.includes(q.dtype)) fail(kernel, `q must be float32, bfloat16 or float16, got ${q.dtype} ${shapeStr(q.layout.shape)}`);
  const dtype = q.dtype as AttnDType;
  for (const [what, t] of [['k', k], ['v', v]] as const)
    if (t.dtype !== dtype) fail(kernel, `${what} must be ${dtype} as q is, got ${t.dtype} ${shapeStr(t.layout.shape)}`);
  for (const [what, t] of [['q', q], ['k', k], ['v', v]] as const) needContiguous(kernel, what, t);
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
  if (Math.max(hd, hdv) > MAX_HEAD_DIM) fail(kernel, `head dims above ${MAX_HEAD_DIM} are not supported: ${ctx}`);
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
  return { B, H, Hkv, Tq, Tk, hd, hdv, rep: H / Hkv, dtype, ms };
}

export const dims = (p: AttnProblem): string => `B=${p.B} H=${p.H} Hkv=${p.Hkv} Tq=${p.Tq} Tk=${p.Tk} hd=${p.hd} hdv=${p.hdv}`;

/** out and lse of the forward: out [B, H, Tq, hdv] of `dtype`, lse [B, H, Tq] float32. */
export function checkForwardOutputs(kernel: string, p: AttnProblem, out: View, lse: View, dtype: AttnDType): void {
  needShape(kernel, 'out', out, [p.B, p.H, p.Tq, p.hdv], dims(p), dtype);
  needShape(kernel, 'lse', lse, [p.B, p.H, p.Tq], dims(p), 'float32');
}

/** The backward's out, lse, dout, dq, dk, dv (all of `dtype` but lse). */
export function checkBackwardArgs(kernel: string, p: AttnProblem, t: Record<'out' | 'lse' | 'dout' | 'dq' | 'dk' | 'dv', View>, dtype: AttnDType): void {
  const ctx = dims(p);
  checkForwardOutputs(kernel, p, t.out, t.lse, dtype);
  needShape(kernel, 'dout', t.dout, [p.B, p.H, p.Tq, p.hdv], ctx, dtype);
  needShape(kernel, 'dq', t.dq, [p.B, p.H, p.Tq, p.hd], ctx, dtype);
  needShape(kernel, 'dk', t.dk, [p.B, p.Hkv, p.Tk, p.hd], ctx, dtype);
  needShape(kernel, 'dv', t.dv, [p.B, p.Hkv, p.Tk, p.hdv], ctx, dtype);
}

/** The parameters every attention kernel starts with (KST_ATTN_PARAMS in attention.cuh). */
export function problemParams(p: AttnProblem, q: View, k: View, v: View, mask: View | null, o: AttentionOpts): Params {
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
export function headSplit(p: AttnProblem, blocks: number): number {
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
