// bf16 attention benchmark (issue 11): the fused attention kernel's forward + backward with bfloat16
// q, k, v (tile products on the half GEMM: native/attention.cc) against the same kernel on float32
// q, k, v, causal, B=1 H=8 Hkv=2 hd=64 at T = 512 / 1024 / 2048, on the cpu backend; each half GEMM
// path (KESTREL_BF16_GEMM: amx, avx512bf16, convert) the CPU has is timed too. Before timing, the
// bf16 result is checked against the float32 one within bf16 rounding. Runs alternate between the
// variants so drift on this shared machine hits them alike; medians after one warm-up run each.
// Writes bench/results/attention_bf16.json.
// Run: node --import tsx bench/attention_bf16.ts [--seqs 512,1024,2048] [--runs 3]
import { parseArgs } from 'node:util';
import * as k from '../src/index.js';
import { loadNative } from '../src/backend/addon.js';
import { median, writeResult } from './lib/report.js';

const SHAPE = { B: 1, H: 8, Hkv: 2, hd: 64, causal: true };

/** Variants: float32 inputs, and bf16 inputs with the automatic or one forced half GEMM path. */
function variants(): { name: string; dtype: k.DType; path?: string }[] {
  const info = loadNative()?.info();
  const paths = ['convert', ...(info?.avx512bf16 ? ['avx512bf16'] : []), ...(info?.amxBf16 ? ['amx'] : [])];
  return [{ name: 'float32', dtype: 'float32' }, { name: 'bf16 auto', dtype: 'bfloat16', path: 'auto' }, ...paths.map((p) => ({ name: `bf16 ${p}`, dtype: 'bfloat16' as k.DType, path: p }))];
}

/** One forward + backward in ms (the result's and gradients' storage released after). */
function step(q: k.Tensor, kk: k.Tensor, v: k.Tensor, g: k.Tensor): number {
  const t0 = performance.now();
  k.tidy(() => k.scaledDotProductAttention(q, kk, v, { causal: SHAPE.causal }).backward(g));
  const ms = performance.now() - t0;
  for (const t of [q, kk, v]) t.zeroGrad();
  return ms;
}

function inputs(T: number, dtype: k.DType): k.Tensor[] {
  const gen = new k.Generator(T);
  const make = (h: number): k.Tensor => {
    const t = k.randn([SHAPE.B, h, T, SHAPE.hd], { backend: 'cpu', generator: gen }).to(dtype);
    t.requiresGrad = true;
    return t;
  };
  return [make(SHAPE.H), make(SHAPE.Hkv), make(SHAPE.Hkv), k.randn([SHAPE.B, SHAPE.H, T, SHAPE.hd], { backend: 'cpu', generator: gen }).to(dtype)];
}

/** The bf16 output against float32 attention of the same (bf16-rounded) inputs: within 4 bf16 ulps (the output rounding and the probabilities rounded to bf16 for PV). */
function validate(T: number): number {
  return k.tidy(() => {
    const [q, kk, v] = inputs(T, 'bfloat16');
    const o16 = k.noGrad(() => k.scaledDotProductAttention(q, kk, v, { causal: true })).toFloat32Array();
    const o32 = k.noGrad(() => k.scaledDotProductAttention(q.to('float32'), kk.to('float32'), v.to('float32'), { causal: true })).toFloat32Array();
    let worst = 0;
    for (let i = 0; i < o32.length; i++) worst = Math.max(worst, Math.abs(o16[i] - o32[i]) / (2 ** -7 * (Math.abs(o32[i]) + 0.1)));
    if (!(worst <= 4)) throw new Error(`validation: bf16 attention at T=${T} differs from float32 by ${worst.toFixed(2)} bf16 ulps`);
    return worst;
  });
}

function main(): void {
  const { values } = parseArgs({ options: { seqs: { type: 'string', default: '512,1024,2048' }, runs: { type: 'string', default: '3' } } });
  const seqs = values.seqs.split(',').map(Number);
  const runs = Number(values.runs);
  const vs = variants();
  const rows: Record<string, unknown>[] = [];
  console.log(`causal attention B=${SHAPE.B} H=${SHAPE.H} Hkv=${SHAPE.Hkv} hd=${SHAPE.hd}, forward + backward, median of ${runs}`);
  console.log(`${'T'.padStart(6)} ${vs.map((x) => x.name.padStart(16)).join(' ')}   float32 / bf16 auto`);
  for (const T of seqs) {
    const ulps = validate(T);
    const data = Object.fromEntries(vs.map((x) => [x.name, inputs(T, x.dtype)]));
    const times: Record<string, number[]> = Object.fromEntries(vs.map((x) => [x.name, []]));
    for (let r = 0; r <= runs; r++)
      for (const x of vs) {
        process.env.KESTREL_BF16_GEMM = x.path ?? 'auto'; // read by the native half GEMM at every call
        const [q, kk, v, g] = data[x.name];
        const ms = step(q, kk, v, g);
        if (r > 0) times[x.name].push(ms);
      }
    delete process.env.KESTREL_BF16_GEMM;
    const med = Object.fromEntries(vs.map((x) => [x.name, median(times[x.name])]));
    const speedup = med['float32'] / med['bf16 auto'];
    console.log(`${String(T).padStart(6)} ${vs.map((x) => `${med[x.name].toFixed(1)} ms`.padStart(16)).join(' ')}   ${speedup.toFixed(2)}x`);
    rows.push({ T, medianMs: med, bf16AutoSpeedup: speedup, validationUlps: ulps });
    for (const ts of Object.values(data)) for (const t of ts) t.dispose();
  }
  console.log(`wrote ${writeResult('attention_bf16', { threads: 'KESTREL_NUM_THREADS (default: all cores)', shape: SHAPE, runs, rows })}`);
}

main();
