// The fused encoder-layer ops against the composites they replace, at BERT-base widths (D 768,
// F 3072) on rows = batch x seq tokens: residual add + LayerNorm (forward + backward, op level),
// and the bias-GELU pair after the GEMM (what changed: the activation, its gradient, the bias
// gradient and, under bf16 autocast, the casts the composite makes around them; the GEMMs are the
// same in both and left out). Each pair is first checked equal, then timed alternately (so load
// drift hits both alike) as medians; float32 and bf16 autocast.
// Run: node --import tsx bench/encoder_fused.ts [--rows 2048] [--runs 7]
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import * as k from '../src/index.js';
import { addLayerNorm } from '../src/ops/fused/add_layer_norm.js';
import { median, writeResult } from './lib/report.js';

const D = 768;
const F = 3072;

interface Pair {
  name: string;
  fused: () => k.Tensor[];
  composite: () => k.Tensor[];
}

function addNormPair(rows: number): Pair {
  const [x, r] = [k.randn([rows, D]).requiresGrad_(), k.randn([rows, D]).requiresGrad_()];
  const [w, b] = [k.randn([D]).requiresGrad_(), k.randn([D]).requiresGrad_()];
  const gy = k.randn([rows, D]);
  const run = (f: () => k.Tensor) => (): k.Tensor[] => {
    for (const t of [x, r, w, b]) t.zeroGrad();
    k.tidy(() => f().backward(gy));
    return [x, r, w, b].map((t) => t.grad!.clone());
  };
  return {
    name: `add+LayerNorm [${rows}, ${D}] fwd+bwd`,
    fused: run(() => addLayerNorm(x, r, w, b, 1e-12)),
    composite: run(() => k.layerNorm(k.add(x, r), w, b, 1e-12)),
  };
}

/** z is the GEMM's float32 output (bias included); y feeds the next GEMM in the compute dtype. */
function geluPair(rows: number, half: boolean): Pair {
  const z = k.randn([rows, F]);
  const g = half ? k.randn([rows, F]).to('bfloat16') : k.randn([rows, F]); // the next GEMM's dx
  const enc = k.getBackend('cpu').encoder!;
  const fused = (): k.Tensor[] => {
    const y = k.empty([rows, F], g.dtype);
    enc.biasGelu('gelu_erf', z, y);
    const [dz, db] = [k.empty([rows, F], g.dtype), k.empty([F], 'float32')];
    enc.biasGeluBackward('gelu_erf', z, g, dz, db);
    return [y, dz, db];
  };
  const composite = (): k.Tensor[] => {
    const zl = z.detach().requiresGrad_();
    // the old path: float32 GELU, a cast for the next GEMM; its gradient cast up, GELU's gradient,
    // the bias gradient as a reduction, and dz cast down for the weight and input GEMMs
    const y = k.tidy(() => (half ? k.unary('gelu_erf', zl).to('bfloat16') : k.unary('gelu_erf', zl)));
    y.backward(g);
    const dz = zl.grad!;
    return [y, half ? dz.to('bfloat16') : dz.clone(), dz.sum(0)];
  };
  return { name: `bias+GELU [${rows}, ${F}] fwd+bwd${half ? ' (bf16 in/out)' : ''}`, fused, composite };
}

function check(p: Pair, rtol: number): void {
  const [a, b] = [p.fused(), p.composite()];
  a.forEach((t, i) => {
    const [x, y] = [t.toFloat32Array(), b[i].toFloat32Array()];
    let scale = 0;
    for (const v of y) scale = Math.max(scale, Math.abs(v));
    for (let j = 0; j < x.length; j++)
      if (!(Math.abs(x[j] - y[j]) <= rtol * (scale + Math.abs(y[j])))) throw new Error(`${p.name}: output ${i}[${j}] fused ${x[j]} composite ${y[j]}`);
  });
  for (const t of [...a, ...b]) t.dispose();
}

function time(f: () => k.Tensor[]): number {
  const t0 = performance.now();
  for (const t of f()) t.dispose();
  return performance.now() - t0;
}

function main(): void {
  const { values } = parseArgs({ options: { rows: { type: 'string', default: '2048' }, runs: { type: 'string', default: '7' } } });
  const [rows, runs] = [Number(values.rows), Number(values.runs)];
  if (!k.hasBackend('cpu')) throw new Error('encoder_fused bench: the native addon is not built');
  k.setDefaultBackend('cpu');
  const pairs: [Pair, number][] = [[addNormPair(rows), 1e-5], [geluPair(rows, false), 1e-5], [geluPair(rows, true), 2 ** -7]];
  const results = pairs.map(([p, rtol]) => {
    check(p, rtol);
    time(p.fused), time(p.composite); // warm-up
    const [tf, tc]: number[][] = [[], []];
    for (let i = 0; i < runs; i++) (tf.push(time(p.fused)), tc.push(time(p.composite)));
    const r = { name: p.name, fusedMs: median(tf), compositeMs: median(tc), speedup: median(tc) / median(tf) };
    console.log(`${r.name.padEnd(48)} fused ${r.fusedMs.toFixed(1).padStart(7)} ms  composite ${r.compositeMs.toFixed(1).padStart(7)} ms  ${r.speedup.toFixed(2)}x`);
    return r;
  });
  console.log(`load average ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
  console.log(`wrote ${writeResult('encoder_fused', { config: { rows, D, F, runs }, load: loadavg(), results })}`);
}

main();
