// MoE layer benchmark (issue 14): forward + backward of one Mixtral sparse block (8 experts, top-2,
// d 512, ffn 1408, 1024 tokens by default) on the grouped path (tokens sorted by expert, grouped
// GEMMs) in float32 and under k.autocast('bfloat16'), vs the per-expert loop it replaced, and vs
// PyTorch's loop (bench/peers/torch_moe.py, transformers' MixtralSparseMoeBlock written in torch)
// in float32 and under torch.autocast bf16 on the same shapes; 'best vs best' compares each side's
// faster setting. Results are validated (grouped vs loop, bf16 vs float32) before anything is
// timed. Medians of --runs iterations after a warm-up (the modes alternate, so load drift on a
// shared machine hits all alike). `--profile` adds where the bf16 step's time goes (k.profile per
// kernel and per op backward over three steps), written to the results as profile_bf16.
// Run: node --import tsx bench/moe.ts [--tokens 1024] [--runs 5] [--no-peer] [--profile]
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as k from '../src/index.js';
import { loadNative } from '../src/backend/addon.js';
import { SparseMoe } from '../src/models/moe.js';
import { decoderConfig } from '../src/models/registry.js';
import { BENCH_DIR, median, runPeerFastest, writeResult } from './lib/report.js';

const SHAPE = { dim: 512, ffn: 1408, experts: 8, topK: 2 };

function block(): SparseMoe {
  const c = decoderConfig({
    model_type: 'mixtral', vocab_size: 32, hidden_size: SHAPE.dim, intermediate_size: SHAPE.ffn, num_hidden_layers: 1,
    num_attention_heads: 8, num_key_value_heads: 8, num_local_experts: SHAPE.experts, num_experts_per_tok: SHAPE.topK,
  }, 'moe bench');
  return new SparseMoe(c, { generator: new k.Generator(1), backend: 'cpu' });
}

/** The timed variants: the grouped path in float32 and under k.autocast('bfloat16'), and the per-expert loop. */
const MODES = ['grouped', 'grouped_bf16', 'loop'] as const;
type Mode = (typeof MODES)[number];

/** One forward + backward of sum(out * dy); returns the output and the input gradient (kept). */
function step(b: SparseMoe, x: k.Tensor, dy: k.Tensor, mode: Mode): { out: k.Tensor; dx: k.Tensor } {
  b.loop = mode === 'loop';
  x.zeroGrad();
  for (const p of b.parameters()) p.zeroGrad();
  return k.tidy(() => {
    const { out } = k.autocast(mode === 'grouped_bf16' ? 'bfloat16' : null, () => b.forward(x));
    out.mul(dy).sum().backward();
    return { out: k.keep(out.detach().to('float32')), dx: k.keep(x.grad!.clone()) };
  });
}

/** max |a - b| over max |b|, for the output and the input gradient */
function relError(a: { out: k.Tensor; dx: k.Tensor }, b: { out: k.Tensor; dx: k.Tensor }): number {
  let worst = 0;
  for (const [u, v] of [[a.out, b.out], [a.dx, b.dx]].map(([p, q]) => [p.toFloat32Array(), q.toFloat32Array()])) {
    const scale = v.reduce((m, t) => Math.max(m, Math.abs(t)), 0);
    u.forEach((t, i) => (worst = Math.max(worst, Math.abs(t - v[i]) / scale)));
  }
  return worst;
}

/**
 * The grouped path against the per-expert loop (float32: reduction order only, 1e-5 of the scale),
 * and the bf16 grouped path against float32 grouped: each of the three chained GEMMs rounds its
 * operands to bf16 and gate/up their outputs too (2^-9 relative each), so a few 2^-8 of the scale,
 * bounded here by 3e-2 (measured 5e-3).
 */
function validate(b: SparseMoe, x: k.Tensor, dy: k.Tensor): { fp32: number; bf16: number } {
  const [g, h, l] = MODES.map((m) => step(b, x, dy, m));
  const fp32 = relError(g, l);
  const bf16 = relError(h, g);
  if (fp32 > 1e-5) throw new Error(`validation: grouped differs from the per-expert loop (max error ${fp32} of the scale)`);
  if (bf16 > 3e-2) throw new Error(`validation: grouped bf16 differs from grouped float32 by ${bf16} of the scale (bound 3e-2)`);
  for (const r of [g, h, l]) (r.out.dispose(), r.dx.dispose());
  return { fp32, bf16 };
}

/** Median seconds per mode, one of each per run in turn so load drift hits all alike. */
function timeAll(b: SparseMoe, x: k.Tensor, dy: k.Tensor, runs: number): Record<Mode, number> {
  const free = (r: { out: k.Tensor; dx: k.Tensor }) => (r.out.dispose(), r.dx.dispose());
  for (const m of MODES) free(step(b, x, dy, m)); // warm-up
  const times = Object.fromEntries(MODES.map((m) => [m, [] as number[]])) as Record<Mode, number[]>;
  for (let i = 0; i < runs; i++)
    for (const m of MODES) {
      const t = performance.now();
      free(step(b, x, dy, m));
      times[m].push((performance.now() - t) / 1e3);
    }
  return Object.fromEntries(MODES.map((m) => [m, median(times[m])])) as Record<Mode, number>;
}

/** k.profile over three bf16 steps: the printed table, and per kernel row its ms per step and share. */
function profileBf16(b: SparseMoe, x: k.Tensor, dy: k.Tensor): { table: string; kernels: { name: string; phase: string; ms_per_step: number; share: number }[] } {
  const steps = 3;
  const free = (r: { out: k.Tensor; dx: k.Tensor }) => (r.out.dispose(), r.dx.dispose());
  free(step(b, x, dy, 'grouped_bf16'));
  k.profile.start();
  for (let i = 0; i < steps; i++) free(step(b, x, dy, 'grouped_bf16'));
  const { wallMs, kernels } = k.profile.stop();
  const rows = kernels.map((r) => ({ name: r.name, phase: r.phase, ms_per_step: r.ms / steps, share: r.ms / wallMs }));
  return { table: k.profile.report({ steps, top: 20, peak: false }), kernels: rows };
}

interface PeerRun { torch: string; threads: number; autocast: string | null; seconds: number; openblas_coretype: string }

/** PyTorch's block in float32 and under torch.autocast bf16 (its best setting is the faster), each at its faster OpenBLAS core type. */
function runTorch(req: object): { fp32: PeerRun | null; bf16: PeerRun | null; why: string } {
  const run = (extra: object): { r: PeerRun | null; why: string } => {
    const r = runPeerFastest<PeerRun>(join(BENCH_DIR, 'peers', 'torch_moe.py'), [JSON.stringify({ ...req, ...extra })], (p) => p.seconds, 600_000, { OMP_WAIT_POLICY: 'PASSIVE' });
    return { r: r.row, why: r.why };
  };
  const [a, b] = [run({}), run({ autocast: 'bf16' })];
  return { fp32: a.r, bf16: b.r, why: [a.why, b.why].filter(Boolean).join('; ') };
}

function main(): void {
  const { values } = parseArgs({ options: { tokens: { type: 'string', default: '1024' }, runs: { type: 'string', default: '5' }, 'no-peer': { type: 'boolean', default: false }, profile: { type: 'boolean', default: false } } });
  const [tokens, runs] = [Number(values.tokens), Number(values.runs)];
  const threads = loadNative()?.info().threads ?? 1;
  const load = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number);
  const loadBefore = load();
  const b = block();
  const x = k.keep(k.randn([1, tokens, SHAPE.dim], { generator: new k.Generator(2), backend: 'cpu', requiresGrad: true }));
  const dy = k.keep(k.randn([1, tokens, SHAPE.dim], { generator: new k.Generator(3), backend: 'cpu' }));
  const maxError = validate(b, x, dy);
  const t = timeAll(b, x, dy, runs);
  // forward 3 GEMMs per routed slot, backward 2x that (dx and dW)
  const gflop = (3 * 2 * tokens * SHAPE.topK * SHAPE.dim * SHAPE.ffn * 3) / 1e9;
  const ms = (s: number) => `${(s * 1e3).toFixed(1)} ms  ${(gflop / s).toFixed(1)} GFLOP/s`;
  console.log(`MoE block fwd+bwd: ${tokens} tokens, ${SHAPE.experts} experts top-${SHAPE.topK}, d ${SHAPE.dim}, ffn ${SHAPE.ffn}, ${threads} threads (load ${loadBefore.join(' ')})`);
  console.log(`  grouped float32   ${ms(t.grouped)}`);
  console.log(`  grouped bf16      ${ms(t.grouped_bf16)}  (k.autocast('bfloat16'))`);
  console.log(`  per-expert loop   ${ms(t.loop)}  (grouped float32 ${(t.loop / t.grouped).toFixed(2)}x)`);
  const prof = values.profile ? profileBf16(b, x, dy) : null;
  if (prof) console.log(prof.table);
  const best = Math.min(t.grouped, t.grouped_bf16);
  let peer: object = { skipped: '--no-peer' };
  if (!values['no-peer']) {
    const p = runTorch({ tokens, dim: SHAPE.dim, ffn: SHAPE.ffn, experts: SHAPE.experts, top_k: SHAPE.topK, runs, threads });
    if (p.fp32 && p.bf16) {
      const torchBest = Math.min(p.fp32.seconds, p.bf16.seconds);
      const ratios = { grouped_fp32_vs_torch_fp32: p.fp32.seconds / t.grouped, grouped_bf16_vs_torch_bf16: p.bf16.seconds / t.grouped_bf16, best_vs_torch_best: torchBest / best };
      console.log(`  PyTorch ${p.fp32.torch} float32     ${ms(p.fp32.seconds)}  (OpenBLAS ${p.fp32.openblas_coretype}; grouped float32 ${ratios.grouped_fp32_vs_torch_fp32.toFixed(2)}x)`);
      console.log(`  PyTorch ${p.bf16.torch} autocast bf16 ${ms(p.bf16.seconds)}  (grouped bf16 ${ratios.grouped_bf16_vs_torch_bf16.toFixed(2)}x)`);
      console.log(`  best vs best: Kestrel ${(best * 1e3).toFixed(1)} ms, PyTorch ${(torchBest * 1e3).toFixed(1)} ms: ${ratios.best_vs_torch_best.toFixed(2)}x`);
      peer = { torch: p.fp32.torch, threads: p.fp32.threads, fp32_s: p.fp32.seconds, fp32_openblas_coretype: p.fp32.openblas_coretype, bf16_s: p.bf16.seconds, bf16_openblas_coretype: p.bf16.openblas_coretype, best_s: torchBest, ...ratios };
    } else console.log(`  PyTorch peer did not run: ${(peer = { skipped: p.why }).skipped}`);
  }
  const path = writeResult('moe', {
    threads, load_before: loadBefore, load_after: load(), shape: { tokens, ...SHAPE }, runs,
    validation_max_rel_error: maxError.fp32, validation_bf16_vs_fp32_rel_error: maxError.bf16,
    grouped_s: t.grouped, grouped_bf16_s: t.grouped_bf16, loop_s: t.loop, grouped_vs_loop: t.loop / t.grouped, gflop_per_iter: gflop,
    grouped_gflops: gflop / t.grouped, grouped_bf16_gflops: gflop / t.grouped_bf16, peer,
    ...(prof ? { profile_bf16: prof.kernels } : {}),
  });
  console.log(`wrote ${path}`);
}

main();
