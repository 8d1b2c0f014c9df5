// MoE layer benchmark (issue 14): forward + backward of one Mixtral sparse block (8 experts, top-2,
// d 512, ffn 1408, 1024 tokens by default) on the grouped path (tokens sorted by expert, grouped
// GEMMs) vs the per-expert loop it replaced, and vs PyTorch's loop (bench/peers/torch_moe.py,
// transformers' MixtralSparseMoeBlock written in torch) on the same shapes. The grouped result is
// validated against the loop before anything is timed. Medians of --runs iterations after a warm-up
// (grouped and loop alternate, so load drift on a shared machine hits both alike).
// Run: node --import tsx bench/moe.ts [--tokens 1024] [--runs 5] [--no-peer]
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as k from '../src/index.js';
import { loadNative } from '../src/backend/addon.js';
import { SparseMoe } from '../src/models/moe.js';
import { decoderConfig } from '../src/models/registry.js';
import { BENCH_DIR, median, runPeer, writeResult } from './lib/report.js';

const SHAPE = { dim: 512, ffn: 1408, experts: 8, topK: 2 };

function block(): SparseMoe {
  const c = decoderConfig({
    model_type: 'mixtral', vocab_size: 32, hidden_size: SHAPE.dim, intermediate_size: SHAPE.ffn, num_hidden_layers: 1,
    num_attention_heads: 8, num_key_value_heads: 8, num_local_experts: SHAPE.experts, num_experts_per_tok: SHAPE.topK,
  }, 'moe bench');
  return new SparseMoe(c, { generator: new k.Generator(1), backend: 'cpu' });
}

/** One forward + backward of sum(out * dy); returns the output and the input gradient (kept). */
function step(b: SparseMoe, x: k.Tensor, dy: k.Tensor, loop: boolean): { out: k.Tensor; dx: k.Tensor } {
  b.loop = loop;
  x.zeroGrad();
  for (const p of b.parameters()) p.zeroGrad();
  return k.tidy(() => {
    const { out } = b.forward(x);
    out.mul(dy).sum().backward();
    return { out: k.keep(out.detach()), dx: k.keep(x.grad!.clone()) };
  });
}

function validate(b: SparseMoe, x: k.Tensor, dy: k.Tensor): number {
  const g = step(b, x, dy, false);
  const l = step(b, x, dy, true);
  let worst = 0;
  for (const [a, c] of [[g.out, l.out], [g.dx, l.dx]]) {
    const [u, v] = [a.toFloat32Array(), c.toFloat32Array()];
    const scale = v.reduce((m, t) => Math.max(m, Math.abs(t)), 0);
    u.forEach((t, i) => (worst = Math.max(worst, Math.abs(t - v[i]) / scale)));
  }
  if (worst > 1e-5) throw new Error(`validation: grouped differs from the per-expert loop (max error ${worst} of the scale)`);
  for (const t of [g.out, g.dx, l.out, l.dx]) t.dispose();
  return worst;
}

/** Median seconds of grouped and loop, alternating one of each per run so load drift hits both alike. */
function timeBoth(b: SparseMoe, x: k.Tensor, dy: k.Tensor, runs: number): { grouped: number; loop: number } {
  const free = (r: { out: k.Tensor; dx: k.Tensor }) => (r.out.dispose(), r.dx.dispose());
  for (const loop of [false, true]) free(step(b, x, dy, loop)); // warm-up
  const times = { grouped: [] as number[], loop: [] as number[] };
  for (let i = 0; i < runs; i++)
    for (const loop of [false, true]) {
      const t = performance.now();
      free(step(b, x, dy, loop));
      times[loop ? 'loop' : 'grouped'].push((performance.now() - t) / 1e3);
    }
  return { grouped: median(times.grouped), loop: median(times.loop) };
}

function main(): void {
  const { values } = parseArgs({ options: { tokens: { type: 'string', default: '1024' }, runs: { type: 'string', default: '5' }, 'no-peer': { type: 'boolean', default: false } } });
  const [tokens, runs] = [Number(values.tokens), Number(values.runs)];
  const threads = loadNative()?.info().threads ?? 1;
  const load = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number);
  const loadBefore = load();
  const b = block();
  const x = k.keep(k.randn([1, tokens, SHAPE.dim], { generator: new k.Generator(2), backend: 'cpu', requiresGrad: true }));
  const dy = k.keep(k.randn([1, tokens, SHAPE.dim], { generator: new k.Generator(3), backend: 'cpu' }));
  const maxError = validate(b, x, dy);
  const { grouped, loop } = timeBoth(b, x, dy, runs);
  // forward 3 GEMMs per routed slot, backward 2x that (dx and dW)
  const gflop = (3 * 2 * tokens * SHAPE.topK * SHAPE.dim * SHAPE.ffn * 3) / 1e9;
  console.log(`MoE block fwd+bwd: ${tokens} tokens, ${SHAPE.experts} experts top-${SHAPE.topK}, d ${SHAPE.dim}, ffn ${SHAPE.ffn}, ${threads} threads (load ${loadBefore.join(' ')})`);
  console.log(`  grouped         ${(grouped * 1e3).toFixed(1)} ms  ${(gflop / grouped).toFixed(1)} GFLOP/s`);
  console.log(`  per-expert loop ${(loop * 1e3).toFixed(1)} ms  ${(gflop / loop).toFixed(1)} GFLOP/s  (grouped ${(loop / grouped).toFixed(2)}x)`);
  let peer: { torch: string; threads: number; seconds: number } | null = null;
  let peerWhy = '';
  if (!values['no-peer']) {
    const r = runPeer(join(BENCH_DIR, 'peers', 'torch_moe.py'), [JSON.stringify({ tokens, dim: SHAPE.dim, ffn: SHAPE.ffn, experts: SHAPE.experts, top_k: SHAPE.topK, runs, threads })], 600_000, undefined, { OMP_WAIT_POLICY: 'PASSIVE' });
    if (r.out) {
      peer = JSON.parse(r.out) as { torch: string; threads: number; seconds: number };
      console.log(`  PyTorch ${peer.torch} (transformers' loop) ${(peer.seconds * 1e3).toFixed(1)} ms  (grouped ${(peer.seconds / grouped).toFixed(2)}x PyTorch)`);
    } else console.log(`  PyTorch peer did not run: ${(peerWhy = r.why)}`);
  }
  const path = writeResult('moe', {
    threads, load_before: loadBefore, load_after: load(), shape: { tokens, ...SHAPE }, runs, validation_max_rel_error: maxError,
    grouped_s: grouped, loop_s: loop, grouped_vs_loop: loop / grouped, gflop_per_iter: gflop, grouped_gflops: gflop / grouped,
    peer: peer ? { ...peer, grouped_vs_torch: peer.seconds / grouped } : { skipped: peerWhy || '--no-peer' },
  });
  console.log(`wrote ${path}`);
}

main();
