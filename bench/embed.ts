// Embedding benchmark (issue 15): contrastive (MNRL) training tokens/s of a BERT-base-shaped
// encoder (d 768, 12 layers, seq 128, batch 32, random weights, full-length rows) next to
// PyTorch CPU running the same model shape and loss (bench/peers/torch_embed.py); the peak
// memory (k.memory) of a plain batch-32 step vs a GradCache step at a larger effective batch
// (chunks of 32); and encoding throughput (sentences/s, median batch) vs PyTorch under inference_mode.
// The loss of the first batch is checked against the float64 InfoNCE formula before timing.
// Run: node --import tsx bench/embed.ts [--layers 12] [--steps 3] [--gc-batch 1024] [--encode 256] [--no-peer]
// Profile a smaller step next to PyTorch's profiler: --layers 2 --batch 8 --steps 2 --profile (prints both tables, writes no result)
// --dtype bf16: Kestrel trains and encodes under k.autocast('bfloat16') (float32 master weights);
// PyTorch runs both float32 and its CPU bf16 autocast and the faster of the two is the peer
// (DESIGN.md: the peer at its best setting); writes bench/results/embed_bf16.json.
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as k from '../src/index.js';
import { buildModel } from '../src/models/registry.js';
import type { BertModel } from '../src/models/bert.js';
import { BENCH_DIR, median, runPeer, writeResult } from './lib/report.js';

const E = k.embeddings;
const SHAPE = { dim: 768, heads: 12, ffn: 3072, vocab: 30522, seq: 128, batch: 32 };

/** Texts are space-separated token ids, so the bench measures the model and not a tokenizer. */
const IDS: k.embeddings.TextTokenizer = { encode: (t) => t.split(' ').map(Number), padTokenId: 0, eosTokenId: null };

function texts(n: number, gen: k.Generator): string[] {
  const ids = k.randint(1, SHAPE.vocab, [n, SHAPE.seq], { generator: gen });
  const v = Array.from(ids.toTypedArray() as BigInt64Array, Number);
  ids.dispose();
  return Array.from({ length: n }, (_, i) => v.slice(i * SHAPE.seq, (i + 1) * SHAPE.seq).join(' '));
}

function pairs(n: number, gen: k.Generator): k.embeddings.PairExample[] {
  const [a, p] = [texts(n, gen), texts(n, gen)];
  return a.map((t, i) => ({ texts: [t, p[i]], where: `row ${i}` }));
}

/** The first batch's MNRL loss against the formula in float64 from the same embeddings: the check before any timing. */
function validate(model: k.embeddings.SentenceEmbedder, batch: k.embeddings.PairExample[]): number {
  const [a, p] = [0, 1].map((c) => k.noGrad(() => model.forward(model.tokenize(batch.map((x) => x.texts[c])))));
  const got = k.noGrad(() => E.mnrlLoss(a, p).item());
  const rows = (t: k.Tensor): Float32Array[] => Array.from({ length: t.shape[0] }, (_, i) => t.toFloat32Array().slice(i * t.shape[1], (i + 1) * t.shape[1]));
  const [A, P] = [rows(a), rows(p)];
  const cos = (x: Float32Array, y: Float32Array): number => {
    let d = 0, nx = 0, ny = 0;
    for (let i = 0; i < x.length; i++) (d += x[i] * y[i]), (nx += x[i] * x[i]), (ny += y[i] * y[i]);
    return d / Math.sqrt(nx * ny);
  };
  const want = A.reduce((s, ai, i) => {
    const logits = P.map((pj) => 20 * cos(ai, pj));
    const m = Math.max(...logits);
    return s + m + Math.log(logits.reduce((t, x) => t + Math.exp(x - m), 0)) - logits[i];
  }, 0) / A.length;
  a.dispose();
  p.dispose();
  if (!(Math.abs(got - want) <= 1e-4 * Math.max(1, Math.abs(want)))) throw new Error(`validation: MNRL loss ${got}, float64 formula ${want}`);
  return got;
}

/** Median seconds of `steps` optimizer steps (after one warm-up) and the largest k.memory peak. */
/** The compute precision of the Kestrel side (--dtype). */
let autocast: 'bfloat16' | undefined;

function timeTraining(trainee: k.embeddings.EmbeddingTrainee, data: k.embeddings.PairExample[][], chunk: number | undefined): { stepS: number; peakBytes: number } {
  const step = E.embeddingStep(trainee, { loss: 'mnrl' }, { gradCacheChunk: chunk });
  const opt = new k.optim.AdamW(trainee.parameters().filter((q) => q.requiresGrad), { lr: 2e-5 });
  const times: number[] = [];
  let peak = 0;
  data.forEach((batch, i) => {
    k.memory.resetPeak();
    const t0 = performance.now();
    step.accumulate([batch], { autocast });
    opt.step();
    opt.zeroGrad();
    if (i) times.push((performance.now() - t0) / 1e3);
    peak = Math.max(peak, k.memory.stats().peak.total);
  });
  opt.dispose();
  return { stepS: median(times), peakBytes: peak };
}

/** --profile: k.profile over `steps` training steps after a warm-up, then PyTorch's profiler over the same step. */
function profileStep(trainee: k.embeddings.EmbeddingTrainee, B: number, layers: number, steps: number, gen: k.Generator, peer: boolean): void {
  const step = E.embeddingStep(trainee, { loss: 'mnrl' }, {});
  const opt = new k.optim.AdamW(trainee.parameters().filter((q) => q.requiresGrad), { lr: 2e-5 });
  const run = (): void => (step.accumulate([pairs(B, gen)], { autocast }), opt.step(), opt.zeroGrad());
  run();
  k.profile.start();
  for (let i = 0; i < steps; i++) run();
  k.profile.stop();
  console.log(k.profile.report({ steps, top: 30, peak: false }));
  opt.dispose();
  if (!peer) return;
  const req = { ...SHAPE, batch: B, layers, steps, threads: 2, encode_texts: 0, profile: true, autocast: autocast ? 'bf16' : null };
  const r = runPeer(join(BENCH_DIR, 'peers', 'torch_embed.py'), [JSON.stringify(req)], 3_600_000, undefined, { OMP_WAIT_POLICY: 'PASSIVE' });
  console.log(r.out ?? `PyTorch peer unavailable: ${r.why}`);
}

/**
 * The PyTorch peer's figures: float32, and under --dtype bf16 also its CPU bf16 autocast, keeping
 * the faster run for training and for encoding (each run's figures are kept under `runs`).
 */
function bestPeer(B: number, layers: number, steps: number, encodeTexts: number): Record<string, number | string | object> | string {
  const runs: Record<string, Record<string, number | string>> = {};
  for (const ac of autocast ? [null, 'bf16'] : [null]) {
    const req = { ...SHAPE, batch: B, layers, steps, threads: 2, encode_texts: encodeTexts, autocast: ac };
    const r = runPeer(join(BENCH_DIR, 'peers', 'torch_embed.py'), [JSON.stringify(req)], 3_600_000, undefined, { OMP_WAIT_POLICY: 'PASSIVE' });
    if (r.out === null) return `PyTorch peer unavailable: ${r.why}`;
    runs[ac ?? 'fp32'] = JSON.parse(r.out.trim().split('\n').at(-1)!) as Record<string, number | string>;
  }
  const best = (key: string): Record<string, number | string> => Object.values(runs).reduce((a, b) => ((b[key] as number) > (a[key] as number) ? b : a));
  const [train, enc] = [best('train_tokens_per_s'), best('encode_sentences_per_s')];
  return { ...train, encode_sentences_per_s: enc.encode_sentences_per_s, encode_autocast: enc.autocast, runs };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: {
    layers: { type: 'string', default: '12' }, steps: { type: 'string', default: '3' }, 'gc-batch': { type: 'string', default: '1024' },
    encode: { type: 'string', default: '256' }, 'no-peer': { type: 'boolean', default: false },
    batch: { type: 'string', default: String(SHAPE.batch) }, profile: { type: 'boolean', default: false },
    dtype: { type: 'string', default: 'fp32' },
  } });
  if (values.dtype !== 'fp32' && values.dtype !== 'bf16') throw new Error(`--dtype must be fp32 or bf16, got '${values.dtype}'`);
  autocast = values.dtype === 'bf16' ? 'bfloat16' : undefined;
  const layers = Number(values.layers);
  const steps = Number(values.steps);
  const gcBatch = Number(values['gc-batch']);
  const config = {
    model_type: 'bert', vocab_size: SHAPE.vocab, hidden_size: SHAPE.dim, num_hidden_layers: layers, num_attention_heads: SHAPE.heads,
    intermediate_size: SHAPE.ffn, max_position_embeddings: 512, type_vocab_size: 2, pad_token_id: 0,
  };
  k.manualSeed(0);
  const bert = buildModel(config, 'bench bert config') as BertModel;
  const model = new E.SentenceEmbedder(bert, IDS, { pooling: 'mean', maxSeqLength: SHAPE.seq });
  const trainee = new E.EmbeddingTrainee(model, { loss: 'mnrl' });
  const gen = new k.Generator(1);
  const B = Number(values.batch);
  if (values.profile) return profileStep(trainee, B, layers, steps, gen, !values['no-peer']);
  const loss0 = validate(model, pairs(B, gen));
  console.log(`validated: first-batch MNRL loss ${loss0.toFixed(5)} equals the float64 formula`);
  const plain = timeTraining(trainee, Array.from({ length: steps + 1 }, () => pairs(B, gen)), undefined);
  const tokPerS = (2 * B * SHAPE.seq) / plain.stepS;
  console.log(`kestrel: train step ${plain.stepS.toFixed(2)} s = ${tokPerS.toFixed(0)} tokens/s, k.memory peak ${(plain.peakBytes / 2 ** 20).toFixed(0)} MiB (batch ${B})`);
  // GradCache: one step at the large effective batch (its activations are those of 32 texts at a time)
  const gc = timeTraining(trainee, [pairs(gcBatch, gen)], 32);
  console.log(`kestrel: GradCache batch ${gcBatch} (chunks of 32): k.memory peak ${(gc.peakBytes / 2 ** 20).toFixed(0)} MiB = ${(gc.peakBytes / plain.peakBytes).toFixed(2)}x the plain batch-${B} step`);
  const enc = texts(Number(values.encode), gen);
  const precision = <T>(f: () => T): T => (autocast ? k.autocast(autocast, f) : f());
  precision(() => E.encode(model, enc.slice(0, B), { batchSize: B })); // warm-up
  // the median batch time: this machine is shared, and one slow batch should not set the figure
  const batchS: number[] = [];
  let t0 = performance.now();
  precision(() => E.encode(model, enc, { batchSize: B, onProgress: () => (batchS.push((performance.now() - t0) / 1e3), (t0 = performance.now())) }));
  const sentPerS = B / median(batchS);
  console.log(`kestrel: encode ${sentPerS.toFixed(1)} sentences/s (seq ${SHAPE.seq}, batch ${B})`);
  let peer: Record<string, number | string | object> | string = 'not run (--no-peer)';
  if (!values['no-peer']) peer = bestPeer(B, layers, steps, enc.length);
  const p = typeof peer === 'string' ? null : peer;
  const trainRatio = p ? tokPerS / (p.train_tokens_per_s as number) : null;
  const encodeRatio = p ? sentPerS / (p.encode_sentences_per_s as number) : null;
  console.log('\nmetric                  kestrel      torch    ratio');
  console.log(`train tokens/s   ${tokPerS.toFixed(0).padStart(14)} ${(p ? (p.train_tokens_per_s as number).toFixed(0) : '-').padStart(10)} ${(trainRatio?.toFixed(2) ?? '-').padStart(8)}`);
  console.log(`encode sent/s    ${sentPerS.toFixed(1).padStart(14)} ${(p ? (p.encode_sentences_per_s as number).toFixed(1) : '-').padStart(10)} ${(encodeRatio?.toFixed(2) ?? '-').padStart(8)}`);
  if (typeof peer === 'string') console.log(peer);
  const path = writeResult(autocast ? 'embed_bf16' : 'embed', {
    threads: 'KESTREL_NUM_THREADS (default: all cores); torch 2', config: { ...SHAPE, batch: B, dtype: values.dtype, layers, steps, gcBatch, gcChunk: 32, encodeTexts: enc.length },
    kestrel: { firstLoss: loss0, trainStepS: plain.stepS, trainTokensPerS: tokPerS, plainPeakBytes: plain.peakBytes, gradCachePeakBytes: gc.peakBytes, encodeSentencesPerS: sentPerS },
    gradCachePeakOverPlain: gc.peakBytes / plain.peakBytes, torch: peer, trainRatio, encodeRatio,
  });
  console.log(`wrote ${path}`);
  model.dispose();
}

await main();
