// Embedding benchmark (issue 15): contrastive (MNRL) training tokens/s of a BERT-base-shaped
// encoder (d 768, 12 layers, seq 128, batch 32, random weights, full-length rows) next to
// PyTorch CPU running the same model shape and loss (bench/peers/torch_embed.py; both embed the
// anchors and positives in one forward, which Kestrel's step does for columns of one length); the peak
// memory (k.memory) of a plain batch-32 step vs a GradCache step at a larger effective batch
// (chunks of 32); and encoding throughput (sentences/s, median batch) vs PyTorch under inference_mode.
// The loss of the first batch is checked against the float64 InfoNCE formula before timing.
// Run: node --import tsx bench/embed.ts [--layers 12] [--steps 3] [--gc-batch 1024] [--encode 256] [--no-peer]
// Profile a smaller step next to PyTorch's profiler: --layers 2 --batch 8 --steps 2 --profile (prints both tables and
// Kestrel's encode table, writes no result)
// --dtype bf16: Kestrel trains and encodes under k.autocast('bfloat16') (float32 master weights);
// PyTorch runs both float32 and its CPU bf16 autocast; the table compares bf16 with bf16 and the
// best with the best (DESIGN.md: the peer at its best setting); writes bench/results/embed_bf16.json.
// --dtype both: Kestrel and PyTorch each in float32 and in bf16, side by side: fp32 vs fp32, bf16 vs
// bf16 and best vs best; writes bench/results/embed_dtypes.json.
// --peer-dtype bf16: run the PyTorch peer in bf16 only; the result then records that float32 was not run.
// Each peer run takes the faster of OpenBLAS's own core type and the forced one (runPeerFastest): at
// its own detection OpenBLAS 0.3.21 may run SSE3 kernels, and without libopenblas0 Debian's torch
// runs the reference BLAS (runPeer refuses that): either gives a float32 peer 5-50x slower than its best.
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as k from '../src/index.js';
import { buildModel } from '../src/models/registry.js';
import type { BertModel } from '../src/models/bert.js';
import { BENCH_DIR, median, peerCoretype, runPeer, runPeerFastest, writeResult } from './lib/report.js';

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
  // encoding: `steps` calls of k.embeddings.encode over 2 batches each (its weight cache lives for one call)
  const enc = texts(2 * B, gen);
  const encodeAll = (): unknown => (autocast ? k.autocast(autocast, () => E.encode(trainee.embedder, enc, { batchSize: B })) : E.encode(trainee.embedder, enc, { batchSize: B }));
  encodeAll();
  k.profile.start();
  for (let i = 0; i < steps; i++) encodeAll();
  k.profile.stop();
  console.log(`encode (${2 * steps} batches of ${B}):\n${k.profile.report({ steps: 2 * steps, top: 20, peak: false })}`);
  if (!peer) return;
  const req = { ...SHAPE, batch: B, layers, steps, threads: 2, encode_texts: 0, profile: true, autocast: autocast ? 'bf16' : null, merge: true };
  const r = runPeer(join(BENCH_DIR, 'peers', 'torch_embed.py'), [JSON.stringify(req)], 3_600_000, peerCoretype(), { OMP_WAIT_POLICY: 'PASSIVE' });
  console.log(r.out ?? `PyTorch peer unavailable: ${r.why}`);
}

type Dtype = 'fp32' | 'bf16';

/** The PyTorch peer's figures for one precision (null autocast: float32), or why it did not run. */
function peerRun(B: number, layers: number, steps: number, encodeTexts: number, dtype: Dtype): Record<string, number | string> | string {
  // merge: anchors and positives in one forward, as Kestrel's step does for columns of one padded length (like for like)
  const req = { ...SHAPE, batch: B, layers, steps, threads: 2, encode_texts: encodeTexts, autocast: dtype === 'bf16' ? 'bf16' : null, merge: true };
  const r = runPeerFastest<Record<string, number | string>>(join(BENCH_DIR, 'peers', 'torch_embed.py'), [JSON.stringify(req)], (row) => Number(row.train_step_s), 3_600_000, { OMP_WAIT_POLICY: 'PASSIVE' });
  return r.row ?? `PyTorch peer unavailable: ${r.why}`;
}

interface KestrelRun {
  firstLoss: number;
  trainStepS: number;
  trainTokensPerS: number;
  plainPeakBytes: number;
  gradCachePeakBytes: number;
  encodeSentencesPerS: number;
}

/** Kestrel's figures at one precision: the validated first loss, training, the GradCache peak, encoding. */
function kestrelRun(model: k.embeddings.SentenceEmbedder, o: { B: number; steps: number; gcBatch: number; encode: number; gen: k.Generator }): KestrelRun {
  const { B, steps, gcBatch, gen } = o;
  const trainee = new E.EmbeddingTrainee(model, { loss: 'mnrl' });
  const loss0 = validate(model, pairs(B, gen));
  console.log(`validated: first-batch MNRL loss ${loss0.toFixed(5)} equals the float64 formula`);
  const plain = timeTraining(trainee, Array.from({ length: steps + 1 }, () => pairs(B, gen)), undefined);
  const tokPerS = (2 * B * SHAPE.seq) / plain.stepS;
  const tag = autocast ?? 'float32';
  console.log(`kestrel ${tag}: train step ${plain.stepS.toFixed(2)} s = ${tokPerS.toFixed(0)} tokens/s, k.memory peak ${(plain.peakBytes / 2 ** 20).toFixed(0)} MiB (batch ${B})`);
  // GradCache: one step at the large effective batch (its activations are those of 32 texts at a time)
  const gc = timeTraining(trainee, [pairs(gcBatch, gen)], 32);
  console.log(`kestrel ${tag}: GradCache batch ${gcBatch} (chunks of 32): k.memory peak ${(gc.peakBytes / 2 ** 20).toFixed(0)} MiB = ${(gc.peakBytes / plain.peakBytes).toFixed(2)}x the plain batch-${B} step`);
  const enc = texts(o.encode, gen);
  const precision = <T>(f: () => T): T => (autocast ? k.autocast(autocast, f) : f());
  precision(() => E.encode(model, enc.slice(0, B), { batchSize: B })); // warm-up
  // the median batch time: this machine is shared, and one slow batch should not set the figure
  const batchS: number[] = [];
  let t0 = performance.now();
  precision(() => E.encode(model, enc, { batchSize: B, onProgress: () => (batchS.push((performance.now() - t0) / 1e3), (t0 = performance.now())) }));
  const sentPerS = B / median(batchS);
  console.log(`kestrel ${tag}: encode ${sentPerS.toFixed(1)} sentences/s (seq ${SHAPE.seq}, batch ${B})`);
  return { firstLoss: loss0, trainStepS: plain.stepS, trainTokensPerS: tokPerS, plainPeakBytes: plain.peakBytes, gradCachePeakBytes: gc.peakBytes, encodeSentencesPerS: sentPerS };
}

interface Row {
  name: string;
  kestrel: number;
  torch: number | null;
}

/** fp32 vs fp32, bf16 vs bf16 (where both ran) and best vs best, for one metric. */
function compare(ks: Partial<Record<Dtype, KestrelRun>>, ts: Partial<Record<Dtype, Record<string, number | string>>>, kKey: keyof KestrelRun, tKey: string): Row[] {
  const rows: Row[] = [];
  for (const d of ['fp32', 'bf16'] as Dtype[]) {
    const kv = ks[d]?.[kKey];
    if (kv !== undefined) rows.push({ name: `${d} vs ${d}`, kestrel: kv, torch: (ts[d]?.[tKey] as number | undefined) ?? null });
  }
  const best = (xs: (number | undefined)[]): number | null => (xs.some((x) => x !== undefined) ? Math.max(...xs.filter((x): x is number => x !== undefined)) : null);
  const kb = best(Object.values(ks).map((r) => r[kKey]));
  const tb = best(Object.values(ts).map((r) => r[tKey] as number | undefined));
  if (Object.keys(ts).length > 1 || Object.keys(ks).length > 1) rows.push({ name: 'best vs best', kestrel: kb!, torch: tb });
  return rows;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: {
    layers: { type: 'string', default: '12' }, steps: { type: 'string', default: '3' }, 'gc-batch': { type: 'string', default: '1024' },
    encode: { type: 'string', default: '256' }, 'no-peer': { type: 'boolean', default: false },
    batch: { type: 'string', default: String(SHAPE.batch) }, profile: { type: 'boolean', default: false },
    dtype: { type: 'string', default: 'fp32' }, 'peer-dtype': { type: 'string', default: 'all' },
  } });
  const dt = values.dtype;
  if (dt !== 'fp32' && dt !== 'bf16' && dt !== 'both') throw new Error(`--dtype must be fp32, bf16 or both, got '${dt}'`);
  const dtypes: Dtype[] = dt === 'both' ? ['fp32', 'bf16'] : [dt];
  const peerDt = values['peer-dtype'];
  if (peerDt !== 'all' && peerDt !== 'fp32' && peerDt !== 'bf16') throw new Error(`--peer-dtype must be all, fp32 or bf16, got '${peerDt}'`);
  const layers = Number(values.layers);
  const steps = Number(values.steps);
  const gcBatch = Number(values['gc-batch']);
  const config = {
    model_type: 'bert', vocab_size: SHAPE.vocab, hidden_size: SHAPE.dim, num_hidden_layers: layers, num_attention_heads: SHAPE.heads,
    intermediate_size: SHAPE.ffn, max_position_embeddings: 512, type_vocab_size: 2, pad_token_id: 0,
  };
  const B = Number(values.batch);
  const ks: Partial<Record<Dtype, KestrelRun>> = {};
  for (const d of dtypes) {
    autocast = d === 'bf16' ? 'bfloat16' : undefined;
    // the same seeded model and data for each precision
    k.manualSeed(0);
    const bert = buildModel(config, 'bench bert config') as BertModel;
    const model = new E.SentenceEmbedder(bert, IDS, { pooling: 'mean', maxSeqLength: SHAPE.seq });
    const gen = new k.Generator(1);
    if (values.profile) {
      profileStep(new E.EmbeddingTrainee(model, { loss: 'mnrl' }), B, layers, steps, gen, !values['no-peer']);
      model.dispose();
      continue;
    }
    ks[d] = kestrelRun(model, { B, steps, gcBatch, encode: Number(values.encode), gen });
    model.dispose();
  }
  if (values.profile) return;
  // the peer in float32, and in bf16 whenever Kestrel ran bf16 (so best vs best sees both)
  const ts: Partial<Record<Dtype, Record<string, number | string>>> = {};
  let peerWhy: string | null = values['no-peer'] ? 'not run (--no-peer)' : null;
  const peerDtypes: Dtype[] = peerDt !== 'all' ? [peerDt] : dtypes.includes('bf16') ? (['fp32', 'bf16'] as Dtype[]) : (['fp32'] as Dtype[]);
  if (!peerWhy)
    for (const d of peerDtypes) {
      const r = peerRun(B, layers, steps, Number(values.encode), d);
      if (typeof r === 'string') {
        peerWhy = r;
        break;
      }
      ts[d] = r;
    }
  const train = compare(ks, ts, 'trainTokensPerS', 'train_tokens_per_s');
  const encode = compare(ks, ts, 'encodeSentencesPerS', 'encode_sentences_per_s');
  console.log(`\n${'metric'.padEnd(30)} ${'kestrel'.padStart(10)} ${'torch'.padStart(10)} ${'ratio'.padStart(8)}`);
  const line = (what: string, r: Row, d: number): void =>
    console.log(`${`${what} ${r.name}`.padEnd(30)} ${r.kestrel.toFixed(d).padStart(10)} ${(r.torch?.toFixed(d) ?? '-').padStart(10)} ${(r.torch ? (r.kestrel / r.torch).toFixed(2) : '-').padStart(8)}`);
  for (const r of train) line('train tok/s', r, 0);
  for (const r of encode) line('encode sent/s', r, 1);
  if (peerWhy) console.log(peerWhy);
  const ratios = (rows: Row[]): Record<string, number | null> => Object.fromEntries(rows.map((r) => [r.name, r.torch ? r.kestrel / r.torch : null]));
  const path = writeResult(dt === 'both' ? 'embed_dtypes' : dt === 'bf16' ? 'embed_bf16' : 'embed', {
    threads: 'KESTREL_NUM_THREADS (default: all cores); torch 2', load: loadavg(), config: { ...SHAPE, batch: B, dtype: dt, peerDtypes, layers, steps, gcBatch, gcChunk: 32, encodeTexts: Number(values.encode) },
    kestrel: ks, torch: peerWhy ?? ts, trainRatio: ratios(train), encodeRatio: ratios(encode),
  });
  console.log(`wrote ${path}`);
}

await main();
