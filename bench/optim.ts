// Optimizer benchmark (issue 11, deliverable 3). (1) The AdamW step over DESIGN.md's smol135m
// parameter list (272 float32 tensors, ~135M elements): one native call per parameter (what
// optimizer in backward does) vs the whole group in one multi-tensor call (AdamW.step()), next
// to torch.optim.AdamW foreach=False/True on the same shapes. (2) Full fine-tuning steps of the
// 'small' and smol135m Llamas with and without optimizer in backward: the 'grad' tag's peak, the total peak and
// the step time. Both are validated (bit-identical results) before they are timed.
// Run: node --import tsx bench/optim.ts [--config smol135m|small|tiny] [--train small,smol135m,smol135m:full] [--runs 7] [--no-peer]
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as k from '../src/index.js';
import { decoderConfig } from '../src/models/registry.js';
import { accumulateGradients } from '../src/train/step.js';
import { decayParamGroups } from '../src/train/param_groups.js';
import { loadNative } from '../src/backend/addon.js';
import { BENCH_DIR, median, runPeer, writeResult } from './lib/report.js';

const SHAPES: Record<string, { dim: number; layers: number; heads: number; kv: number; ffn: number; vocab: number; seq: number; batch: number }> = {
  tiny: { dim: 128, layers: 4, heads: 4, kv: 4, ffn: 352, vocab: 512, seq: 256, batch: 8 },
  small: { dim: 512, layers: 8, heads: 8, kv: 2, ffn: 1376, vocab: 8000, seq: 256, batch: 4 },
  smol135m: { dim: 576, layers: 30, heads: 9, kv: 3, ffn: 1536, vocab: 49152, seq: 256, batch: 1 },
};

/** The parameter shapes of a tied-embedding Llama (HF order): smol135m gives 272 tensors. */
function paramShapes(name: string): number[][] {
  const s = SHAPES[name];
  const hd = s.dim / s.heads;
  const layer = [[s.dim], [s.dim, s.dim], [s.kv * hd, s.dim], [s.kv * hd, s.dim], [s.dim, s.dim], [s.dim], [s.ffn, s.dim], [s.ffn, s.dim], [s.dim, s.ffn]];
  return [[s.vocab, s.dim], ...Array.from({ length: s.layers }, () => layer).flat(), [s.dim]];
}

function makeParams(shapes: number[][], seed: number): k.Tensor[] {
  const gen = new k.Generator(seed);
  return shapes.map((shape) => {
    const p = k.keep(k.randn(shape, { generator: gen, requiresGrad: true }));
    p.grad = k.keep(k.randn(shape, { generator: gen }));
    return p;
  });
}

/** One AdamW step: the group in one call, or one call per parameter (optimizer in backward's way). */
function adamwStep(opt: k.optim.AdamW, params: k.Tensor[], grouped: boolean): void {
  if (grouped) return opt.step();
  opt.beginStep();
  for (const p of params) opt.stepParam(p);
}

function checkBitIdentical(shapes: number[][]): void {
  const [a, b] = [makeParams(shapes, 1), makeParams(shapes, 1)];
  const [oa, ob] = [new k.optim.AdamW(a, { lr: 1e-3 }), new k.optim.AdamW(b, { lr: 1e-3 })];
  for (let i = 0; i < 2; i++) (adamwStep(oa, a, true), adamwStep(ob, b, false));
  a.forEach((p, i) => {
    const [x, y] = [new Uint32Array(p.toFloat32Array().buffer), new Uint32Array(b[i].toFloat32Array().buffer)];
    if (x.some((v, e) => v !== y[e])) throw new Error(`validation: the grouped AdamW differs from the per-parameter one in tensor ${i}`);
  });
  for (const p of [...a, ...b]) (p.zeroGrad(), p.dispose());
  oa.dispose();
  ob.dispose();
}

function stepTimes(config: string, runs: number): { tensors: number; elements: number; perParamMs: number; groupedMs: number } {
  const shapes = paramShapes(config);
  checkBitIdentical(paramShapes('tiny'));
  const params = makeParams(shapes, 2);
  const opt = new k.optim.AdamW(params, { lr: 1e-4, weightDecay: 0.01 });
  adamwStep(opt, params, true); // warm-up: allocates the moments
  const times = { perParam: [] as number[], grouped: [] as number[] };
  for (let r = 0; r < runs; r++)
    for (const grouped of [false, true]) {
      const t = performance.now();
      adamwStep(opt, params, grouped);
      times[grouped ? 'grouped' : 'perParam'].push(performance.now() - t);
    }
  const elements = params.reduce((n, p) => n + p.numel, 0);
  for (const p of params) (p.zeroGrad(), p.dispose());
  opt.dispose();
  return { tensors: shapes.length, elements, perParamMs: median(times.perParam), groupedMs: median(times.grouped) };
}

interface StepResult {
  gradPeakMB: number;
  totalPeakMB: number;
  stepMs: number;
  weights: Float32Array[];
}

/** Full fine-tuning steps (AdamW, decay groups) of a random Llama; peaks of the last step. */
function trainSteps(config: string, checkpointing: k.Checkpointing, inBackward: boolean, steps: number): StepResult {
  const s = SHAPES[config];
  k.manualSeed(0);
  const model = new k.CausalLM(decoderConfig({
    model_type: 'llama', vocab_size: s.vocab, hidden_size: s.dim, intermediate_size: s.ffn, num_hidden_layers: s.layers,
    num_attention_heads: s.heads, num_key_value_heads: s.kv, tie_word_embeddings: false, max_position_embeddings: 4096,
  }, `${config} (bench)`));
  model.checkpointing = checkpointing;
  const opt = new k.optim.AdamW(decayParamGroups(model, 0.01), { lr: 1e-4 });
  const iob = inBackward ? new k.optim.OptimizerInBackward(opt) : null;
  const gen = new k.Generator(1);
  const times: number[] = [];
  let peak = k.memory.stats().peak;
  for (let i = 0; i < steps; i++) {
    const ids = k.randint(0, s.vocab, [s.batch, s.seq], { generator: gen }).toArray() as number[][];
    const batch = { inputIds: ids, labels: ids, attentionMask: ids.map((r) => r.map(() => 1)) };
    k.memory.resetPeak();
    const t = performance.now();
    if (iob) iob.step(() => accumulateGradients(model, [batch]));
    else {
      accumulateGradients(model, [batch]);
      opt.step();
      opt.zeroGrad();
    }
    times.push(performance.now() - t);
    peak = k.memory.stats().peak;
  }
  const weights = model.parameters().map((p) => p.toFloat32Array());
  iob?.dispose();
  opt.dispose();
  model.dispose();
  const mb = (b: number) => +(b / 2 ** 20).toFixed(2);
  return { gradPeakMB: mb(peak.grad), totalPeakMB: mb(peak.total), stepMs: median(times.slice(1)), weights };
}

function main(): void {
  const { values } = parseArgs({ options: { config: { type: 'string', default: 'smol135m' }, train: { type: 'string', default: 'small,smol135m,smol135m:full' }, runs: { type: 'string', default: '7' }, 'no-peer': { type: 'boolean', default: false } } });
  const runs = Number(values.runs);
  const threads = loadNative()?.info().threads ?? 1;
  const load = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number);
  const loadBefore = load();
  const step = stepTimes(values.config!, runs);
  const gb = (step.elements * 28) / 1e9; // read p, g, m, v; write p, m, v: 7 float32 per element
  console.log(`AdamW step, ${values.config} (${step.tensors} tensors, ${(step.elements / 1e6).toFixed(1)}M elements, ${threads} threads):`);
  console.log(`  one call per parameter  ${step.perParamMs.toFixed(1)} ms  ${(gb / (step.perParamMs / 1e3)).toFixed(1)} GB/s`);
  console.log(`  one call for the group  ${step.groupedMs.toFixed(1)} ms  ${(gb / (step.groupedMs / 1e3)).toFixed(1)} GB/s  (${(step.perParamMs / step.groupedMs).toFixed(2)}x)`);
  let peer: Record<string, number | string> | null = null;
  if (!values['no-peer']) {
    process.env.OMP_WAIT_POLICY = 'PASSIVE';
    const r = runPeer(join(BENCH_DIR, 'peers', 'torch_adamw.py'), [JSON.stringify({ shapes: paramShapes(values.config!), runs, threads })]);
    if (r.out) {
      peer = JSON.parse(r.out) as Record<string, number | string>;
      const [pt, fe] = [Number(peer.per_tensor) * 1e3, Number(peer.foreach) * 1e3];
      console.log(`  torch ${peer.torch} AdamW foreach=False ${pt.toFixed(1)} ms, foreach=True ${fe.toFixed(1)} ms; Kestrel grouped / torch foreach = ${(fe / step.groupedMs).toFixed(2)}x faster`);
    } else console.log(`  torch peer skipped: ${r.why}`);
  }
  // 'smol135m:full' = with full activation checkpointing (activations no longer hide the gradients)
  const training = values.train!.split(',').map((spec) => {
    const [config, checkpointing = 'none'] = spec.split(':') as [string, k.Checkpointing?];
    const [ordinary, fused] = [trainSteps(config, checkpointing, false, 3), trainSteps(config, checkpointing, true, 3)];
    ordinary.weights.forEach((w, i) => {
      if (!w.every((x, e) => Object.is(x, fused.weights[i][e]))) throw new Error(`validation: optimizer in backward's weights differ from the ordinary step's in parameter ${i}`);
    });
    console.log(`Full fine-tuning step, ${config} (batch ${SHAPES[config].batch} x ${SHAPES[config].seq}, checkpointing ${checkpointing}), weights bit-identical:`);
    for (const [name, r] of [['ordinary step', ordinary], ['optimizer in backward', fused]] as const)
      console.log(`  ${name.padEnd(22)} grad peak ${r.gradPeakMB} MB, total peak ${r.totalPeakMB} MB, step ${r.stepMs.toFixed(0)} ms`);
    return {
      config, checkpointing, ...SHAPES[config],
      ordinary: { gradPeakMB: ordinary.gradPeakMB, totalPeakMB: ordinary.totalPeakMB, stepMs: ordinary.stepMs },
      inBackward: { gradPeakMB: fused.gradPeakMB, totalPeakMB: fused.totalPeakMB, stepMs: fused.stepMs },
      gradPeakRatio: ordinary.gradPeakMB / fused.gradPeakMB, totalPeakSavedMB: +(ordinary.totalPeakMB - fused.totalPeakMB).toFixed(2),
    };
  });
  const path = writeResult('optim', {
    threads, loadavg: { before: loadBefore, after: load() },
    adamwStep: { config: values.config, ...step, gbMoved: gb, speedup: step.perParamMs / step.groupedMs, torch: peer },
    optimizerInBackward: training,
  });
  console.log(`wrote ${path}`);
}

main();
