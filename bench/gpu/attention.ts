// Flash attention on the GPU: k.scaledDotProductAttention forward and forward + backward, causal,
// bf16 (tensor cores, native/cuda/kernels/attention_tc*.cu) and float32 (SIMT) next to PyTorch's
// bf16 SDPA (FlashAttention-2) on the same shapes in the same run. The bf16 path is first checked
// against the float32 one at a small size. TFLOP/s count the useful FLOPs (4 T² hd B H for the
// forward, 2.5x that for the backward, halved by causality), as FlashAttention's benchmarks do.
// bf16 runs twice: dq by float32 atomics (the default) and by the deterministic pass
// (KESTREL_DETERMINISTIC=1). Prints a table; writes bench/results/gpu-attention.json (not with --smoke).
// Decode steps (one query position over a long KV cache, bf16): the split-key decode kernels
// (attention_decode.cu), the tile kernels they replaced (KESTREL_CUDA_DECODE_ATTENTION=0) and
// PyTorch's SDPA, in ms and in GB/s of K and V read.
// Run: node --import tsx bench/gpu/attention.ts [--runs 10] [--no-peer]
//      --smoke: toy sizes, to check the script (KESTREL_CUDA_EMULATE=1 ... --smoke --no-peer)
import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import * as k from '../../src/index.js';
import { median, writeResult } from '../lib/report.js';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '10' }, 'no-peer': { type: 'boolean' }, smoke: { type: 'boolean' } } });
const SMOKE = values.smoke === true;
const RUNS = SMOKE ? 1 : Number(values.runs);

interface Shape { name: string; B: number; H: number; Hkv: number; T: number; hd: number }
const SHAPES: Shape[] = SMOKE
  ? [{ name: 'toy', B: 1, H: 2, Hkv: 1, T: 80, hd: 64 }]
  : [
    { name: 'smol135m 16x1024', B: 16, H: 9, Hkv: 3, T: 1024, hd: 64 },
    { name: 'llama1b 8x2048', B: 8, H: 32, Hkv: 8, T: 2048, hd: 64 },
    { name: 'hd128 4x2048', B: 4, H: 16, Hkv: 16, T: 2048, hd: 128 },
  ];

interface DecodeShape { name: string; B: number; H: number; Hkv: number; Tk: number; hd: number }
const DECODE_SHAPES: DecodeShape[] = SMOKE
  ? [{ name: 'toy decode', B: 1, H: 4, Hkv: 2, Tk: 300, hd: 64 }]
  : [
    { name: 'llama1b decode 1x4096', B: 1, H: 32, Hkv: 8, Tk: 4096, hd: 64 },
    { name: 'llama1b decode 8x2048', B: 8, H: 32, Hkv: 8, Tk: 2048, hd: 64 },
    { name: 'smol135m decode 1x1024', B: 1, H: 9, Hkv: 3, Tk: 1024, hd: 64 },
  ];

const leaf = (shape: number[], dtype: k.DType, seed: number): k.Tensor =>
  k.randn(shape, { backend: 'cuda', generator: new k.Generator(seed) }).to(dtype).detach().requiresGrad_();

/** Median milliseconds of f after one warmup call (the queue drained around each run). */
function time(f: () => void): number {
  f();
  k.cuda.synchronize();
  const ms: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    f();
    k.cuda.synchronize();
    ms.push(performance.now() - t0);
  }
  return median(ms);
}

/** f with the environment variable `name` set to `value` (the kernels read these per call). */
function withEnv<T>(name: string, value: string, f: () => T): T {
  const old = process.env[name];
  process.env[name] = value;
  try {
    return f();
  } finally {
    if (old === undefined) delete process.env[name];
    else process.env[name] = old;
  }
}

function measure(s: Shape, dtype: k.DType): { fwdMs: number; fwdBwdMs: number } {
  const [q, kk, v] = [leaf([s.B, s.H, s.T, s.hd], dtype, 1), leaf([s.B, s.Hkv, s.T, s.hd], dtype, 2), leaf([s.B, s.Hkv, s.T, s.hd], dtype, 3)];
  const g = leaf([s.B, s.H, s.T, s.hd], dtype, 4).detach();
  const fwdMs = time(() => k.tidy(() => void k.noGrad(() => k.scaledDotProductAttention(q, kk, v, { causal: true }))));
  const fwdBwdMs = time(() => {
    k.tidy(() => k.scaledDotProductAttention(q, kk, v, { causal: true }).backward(g));
    for (const t of [q, kk, v]) t.zeroGrad();
  });
  for (const t of [q, kk, v, g]) t.dispose();
  return { fwdMs, fwdBwdMs };
}

/** The largest |bf16 - float32| of out and the gradients at a small size (both from the same bf16-rounded inputs). */
function validate(): number {
  const s = { B: 1, H: 4, Hkv: 2, T: 200, hd: 64 };
  const run = (dtype: k.DType): Float32Array[] => k.tidy(() => {
    const ins = [leaf([s.B, s.H, s.T, s.hd], 'bfloat16', 1), leaf([s.B, s.Hkv, s.T, s.hd], 'bfloat16', 2), leaf([s.B, s.Hkv, s.T, s.hd], 'bfloat16', 3)]
      .map((t) => t.to(dtype).detach().requiresGrad_());
    const out = k.scaledDotProductAttention(ins[0], ins[1], ins[2], { causal: true });
    out.backward(k.onesLike(out));
    return [out, ...ins.map((t) => t.grad!)].map((t) => t.toFloat32Array());
  });
  const [a, b] = [run('bfloat16'), run('float32')];
  let err = 0;
  a.forEach((x, i) => x.forEach((y, j) => { err = Math.max(err, Math.abs(y - b[i][j]) / (1 + Math.abs(b[i][j]))); }));
  return err;
}

/** The peers' imports and timer: t(f) is the median ms of `runs` calls (set by each script) after a warm-up, the queue drained around each. */
const PY_PRELUDE = `
import json, sys, time, torch
import torch.nn.functional as F
def t(f):
    f(); torch.cuda.synchronize(); ms = []
    for _ in range(runs):
        t0 = time.perf_counter(); f(); torch.cuda.synchronize(); ms.append((time.perf_counter() - t0) * 1e3)
    return sorted(ms)[len(ms) // 2]
`;

const PEER = `${PY_PRELUDE}B, H, Hkv, T, hd, runs = map(int, sys.argv[1:7])
q = torch.randn(B, H, T, hd, device='cuda', dtype=torch.bfloat16, requires_grad=True)
k = torch.randn(B, Hkv, T, hd, device='cuda', dtype=torch.bfloat16).repeat_interleave(H // Hkv, 1).detach().requires_grad_()
v = torch.randn(B, Hkv, T, hd, device='cuda', dtype=torch.bfloat16).repeat_interleave(H // Hkv, 1).detach().requires_grad_()
g = torch.randn(B, H, T, hd, device='cuda', dtype=torch.bfloat16)
with torch.no_grad():
    fwd = t(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))
both = t(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True).backward(g))
print(json.dumps({"fwdMs": fwd, "fwdBwdMs": both}))
`;

/** A PyTorch peer script's last printed JSON line, or why there is none. */
function torchPeer<T>(script: string, args: number[], timeoutMs: number): T | string {
  if (values['no-peer']) return 'not run (--no-peer)';
  const r = spawnSync('python3', ['-c', script, ...args.map(String)], { encoding: 'utf8', timeout: timeoutMs });
  try {
    return JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as T;
  } catch {
    return `error: ${(r.stderr || r.error?.message || 'no output').trim().split('\n').pop()}`;
  }
}

/** bf16 decode-step forward ms with the decode kernels, or with the tile kernels where `tiles`. */
function measureDecode(s: DecodeShape, tiles: boolean): number {
  const [q, kk, v] = [leaf([s.B, s.H, 1, s.hd], 'bfloat16', 5), leaf([s.B, s.Hkv, s.Tk, s.hd], 'bfloat16', 6), leaf([s.B, s.Hkv, s.Tk, s.hd], 'bfloat16', 7)];
  try {
    return withEnv('KESTREL_CUDA_DECODE_ATTENTION', tiles ? '0' : '1', () =>
      time(() => k.tidy(() => void k.noGrad(() => k.scaledDotProductAttention(q, kk, v, { causal: true })))));
  } finally {
    for (const t of [q, kk, v]) t.dispose();
  }
}

const PEER_DECODE = `${PY_PRELUDE}B, H, Hkv, Tk, hd, runs = map(int, sys.argv[1:7])
q = torch.randn(B, H, 1, hd, device='cuda', dtype=torch.bfloat16)
k = torch.randn(B, Hkv, Tk, hd, device='cuda', dtype=torch.bfloat16)
v = torch.randn(B, Hkv, Tk, hd, device='cuda', dtype=torch.bfloat16)
with torch.no_grad():
    ms = t(lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True))
print(json.dumps({"ms": ms}))
`;

const err = validate();
if (!(err < 0.05)) throw new Error(`bf16 attention differs from float32 by ${err} (relative): not timing it`);
console.log('| shape | Kestrel bf16 | Kestrel bf16 deterministic | Kestrel float32 | PyTorch bf16 SDPA |  (forward ms (TFLOP/s) / forward + backward ms (TFLOP/s))');
const rows = SHAPES.map((s) => {
  const flop = 4 * s.T * s.T * s.hd * s.B * s.H * 0.5; // forward, causal
  const tf = (ms: number, f: number): number => (f * flop) / (ms * 1e-3) / 1e12;
  const res = { bf16: measure(s, 'bfloat16'), bf16Deterministic: withEnv('KESTREL_DETERMINISTIC', '1', () => measure(s, 'bfloat16')), float32: measure(s, 'float32'), torch: torchPeer<{ fwdMs: number; fwdBwdMs: number }>(PEER, [s.B, s.H, s.Hkv, s.T, s.hd, RUNS], 600_000) };
  const cell = (x: { fwdMs: number; fwdBwdMs: number } | string): string =>
    typeof x === 'string' ? x : `${x.fwdMs.toFixed(2)} ms (${tf(x.fwdMs, 1).toFixed(1)}) / ${x.fwdBwdMs.toFixed(2)} ms (${tf(x.fwdBwdMs, 3.5).toFixed(1)})`;
  console.log(`| ${s.name} | ${cell(res.bf16)} | ${cell(res.bf16Deterministic)} | ${cell(res.float32)} | ${cell(res.torch)} |`);
  return { shape: s, ...res };
});
console.log('| decode shape (bf16) | Kestrel decode kernels | Kestrel tile kernels | PyTorch SDPA |  (ms (GB/s of K and V))');
const decode = DECODE_SHAPES.map((s) => {
  const gb = (2 * s.B * s.Hkv * s.Tk * s.hd * 2) / 1e9;
  const res = { decodeKernelsMs: measureDecode(s, false), tileKernelsMs: measureDecode(s, true), torchMs: ((r) => (typeof r === 'string' ? r : r.ms))(torchPeer<{ ms: number }>(PEER_DECODE, [s.B, s.H, s.Hkv, s.Tk, s.hd, RUNS], 300_000)) };
  const cell = (ms: number | string): string => (typeof ms === 'string' ? ms : `${ms.toFixed(3)} ms (${(gb / (ms * 1e-3)).toFixed(0)})`);
  console.log(`| ${s.name} | ${cell(res.decodeKernelsMs)} | ${cell(res.tileKernelsMs)} | ${cell(res.torchMs)} |`);
  return { shape: s, ...res };
});
console.log(`validated: bf16 vs float32 max relative difference ${err.toExponential(2)}`);
if (!SMOKE) console.log(`wrote ${writeResult('gpu-attention', { validation: err, runs: RUNS, rows, decode })}`);
