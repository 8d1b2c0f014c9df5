// Data-parallel training by ZeRO stage: 2 ranks × 1 thread against 1 rank × 2 threads on the same
// global batch (tokens/s, median of the steps after the first), each rank's peak k.memory tags next
// to the ZeRO paper's formulas for float32 training with AdamW (Rajbhandari et al. 2020, §5: params
// 4Ψ, grads 4Ψ, moments 8Ψ; stage 1 shards the moments, stage 2 the grads too; Kestrel's shards
// also keep a float32 master copy, +4Ψ/N), and the bytes each rank moved per step (ProcessGroup's
// traffic, the paper's units) against the paper's 2Ψ·4 bytes for DDP and stages 1-2. The losses of
// every run are checked against the 1-rank run's before anything is reported. No PyTorch DDP peer yet.
// Run: npm run bench:dist-train -- [--shape tiny|small|smol135m] [--steps 6] [--stages 0,1,2] [--bucket ELEMENTS (default hidden²)]
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as k from '../src/index.js';
import { initProcessGroup } from '../src/dist/init.js';
import { launch } from '../src/dist/launch.js';
import { DistributedDataParallel } from '../src/dist/ddp.js';
import { ZeroStage1 } from '../src/dist/zero1.js';
import { ZeroStage2 } from '../src/dist/zero2.js';
import type { ProcessGroup } from '../src/dist/process_group.js';
import { decoderConfig } from '../src/models/registry.js';
import { Trainer } from '../src/train/trainer.js';
import { decayParamGroups } from '../src/train/param_groups.js';
import type { Batch } from '../src/data/packing.js';
import { median, writeResult } from './lib/report.js';

const { values } = parseArgs({ options: { shape: { type: 'string', default: 'tiny' }, steps: { type: 'string', default: '6' }, stages: { type: 'string', default: '0,1,2' }, bucket: { type: 'string' } } });

// DESIGN.md's benchmark shapes (batch = the global batch)
const SHAPES: Record<string, { d: number; layers: number; heads: number; kv: number; ffn: number; vocab: number; seq: number; batch: number }> = {
  tiny: { d: 128, layers: 4, heads: 4, kv: 4, ffn: 352, vocab: 512, seq: 256, batch: 8 },
  small: { d: 512, layers: 8, heads: 8, kv: 2, ffn: 1376, vocab: 8000, seq: 256, batch: 4 },
  smol135m: { d: 576, layers: 30, heads: 9, kv: 3, ffn: 1536, vocab: 49152, seq: 256, batch: 2 },
};

interface RankResult { losses: number[]; tokensPerSec: number[]; peak: { param: number; grad: number; optimizer: number }; bytesPerStep: number; psi: number }

/** A fixed synthetic corpus: row i of every epoch is the same tokens, so every layout sees the same global batches. */
function source(vocab: number, seq: number): { batches(o: { batchSize: number; startStep?: number }): Iterable<Batch> } {
  return {
    *batches({ batchSize, startStep = 0 }) {
      for (let b = startStep; ; b++) {
        const ids = Array.from({ length: batchSize }, (_, r) => Array.from({ length: seq }, (_, t) => ((b * batchSize + r) * 131 + t * 17 + ((t * t) % 7)) % vocab));
        yield { inputIds: ids, labels: ids, attentionMask: ids.map((row) => row.map(() => 1)) };
      }
    },
  };
}

async function rankMain(): Promise<void> {
  const s = SHAPES[values.shape!];
  const steps = Number(values.steps);
  const stage = process.env.BENCH_STAGE!; // 'none' (one process) or 0, 1, 2
  k.manualSeed(1);
  const model = new k.CausalLM(decoderConfig({
    model_type: 'llama', vocab_size: s.vocab, hidden_size: s.d, intermediate_size: s.ffn, num_hidden_layers: s.layers,
    num_attention_heads: s.heads, num_key_value_heads: s.kv, max_position_embeddings: s.seq,
  }, `bench ${values.shape}`));
  let pg: ProcessGroup | null = null;
  let dp: DistributedDataParallel | null = null;
  const groups = decayParamGroups<{ lr: number; weightDecay: number }>(model, 0.01);
  if (stage !== 'none') {
    pg = await initProcessGroup();
    // reduce buckets of hidden_size² elements (what the HF Trainer's "auto" sets), or --bucket
    const bucketBytes = 4 * (values.bucket ? Number(values.bucket) : s.d * s.d);
    dp = new DistributedDataParallel(pg, bucketBytes);
    await dp.broadcastFromRank0(model.parameters());
    if (stage === '1') dp = new ZeroStage1(pg, groups, bucketBytes);
    if (stage === '2') dp = new ZeroStage2(pg, groups, bucketBytes);
  }
  const shards = dp instanceof ZeroStage1 || dp instanceof ZeroStage2 ? dp.shardGroups : groups;
  const optimizer = new k.optim.AdamW(shards, { lr: 1e-4 });
  const world = pg?.size ?? 1;
  const trainer = new Trainer({ model, data: source(s.vocab, s.seq), optimizer, batchSize: s.batch / 2, gradAccum: 2 / world, maxSteps: steps, clip: 1, dataParallel: dp });
  const before = pg ? Object.values(pg.traffic).reduce((a, b) => a + b, 0) : 0;
  const m = await trainer.train();
  const after = pg ? Object.values(pg.traffic).reduce((a, b) => a + b, 0) : 0;
  const psi = model.parameters().reduce((n, p) => n + p.numel, 0);
  const peak = { param: Math.max(...m.map((x) => x.mem_peak.param)), grad: Math.max(...m.map((x) => x.mem_peak.grad)), optimizer: Math.max(...m.map((x) => x.mem_peak.optimizer)) };
  const out: RankResult = { losses: m.map((x) => x.loss), tokensPerSec: m.map((x) => x.tokens_per_sec), peak, bytesPerStep: (after - before) / steps, psi };
  pg?.destroy();
  if ((pg?.rank ?? 0) === 0) process.stderr.write(`RESULT ${JSON.stringify(out)}\n`);
}

async function run(stage: string, ranks: number, threads: number): Promise<RankResult> {
  let out = '';
  const r = await launch({
    nproc: ranks, command: process.execPath, args: ['--import', 'tsx', fileURLToPath(import.meta.url), ...process.argv.slice(2)],
    env: { BENCH_DIST_TRAIN_RANK: '1', BENCH_STAGE: stage, KESTREL_NUM_THREADS: String(threads) }, stdout: 'ignore',
    onStderr: (rank, line) => void (line.startsWith('RESULT ') ? (out = line.slice(7)) : process.stderr.write(`[rank ${rank}] ${line}\n`)),
  });
  if (r.exitCode !== 0 || !out) throw new Error(`bench/dist_train: stage ${stage} on ${ranks} ranks failed: ${r.failure?.message ?? 'no result'}`);
  return JSON.parse(out) as RankResult;
}

async function main(): Promise<void> {
  const one = await run('none', 1, 2);
  const psi = one.psi;
  const MB = (b: number): string => (b / 2 ** 20).toFixed(2);
  const rows = [];
  console.log(`${values.shape}: Ψ = ${psi} parameters, global batch ${SHAPES[values.shape!].batch} × ${SHAPES[values.shape!].seq}, ${values.steps} steps; 1 rank × 2 threads ${median(one.tokensPerSec.slice(1)).toFixed(0)} tok/s`);
  console.log('stage  tok/s  ratio | param MB (paper)  grad MB (paper)  optim MB (paper) | MB moved/step (paper)');
  for (const stage of values.stages!.split(',')) {
    const two = await run(stage, 2, 1);
    // validate before reporting: the same global batches, so the same losses within float32 reduction-order tolerance
    two.losses.forEach((l, i) => {
      if (Math.abs(l - one.losses[i]) > 1e-4 * Math.abs(one.losses[i])) throw new Error(`stage ${stage}: step ${i + 1} loss ${l} vs 1 rank's ${one.losses[i]}`);
    });
    const N = 2;
    const st = Number(stage);
    const paper = { param: 4 * psi + (st >= 1 ? (4 * psi) / N : 0), grad: st >= 2 ? (4 * psi) / N : 4 * psi, optimizer: st >= 1 ? (8 * psi) / N : 8 * psi, bytes: 2 * 4 * psi };
    const tok = median(two.tokensPerSec.slice(1));
    const ratio = tok / median(one.tokensPerSec.slice(1));
    rows.push({ stage: st, tokensPerSec: tok, ratioVs1Rank2Threads: ratio, peak: two.peak, paper, bytesPerStep: two.bytesPerStep });
    console.log(`${String(st).padStart(5)} ${tok.toFixed(0).padStart(6)} ${ratio.toFixed(2).padStart(6)} | ${MB(two.peak.param).padStart(8)} (${MB(paper.param)})  ${MB(two.peak.grad).padStart(8)} (${MB(paper.grad)})  ${MB(two.peak.optimizer).padStart(8)} (${MB(paper.optimizer)}) | ${MB(two.bytesPerStep).padStart(8)} (${MB(paper.bytes)})`);
  }
  const path = writeResult('dist_train', {
    shape: values.shape, steps: Number(values.steps), psi, oneRankTwoThreads: { tokensPerSec: median(one.tokensPerSec.slice(1)), peak: one.peak }, rows,
    bucketElements: values.bucket ? Number(values.bucket) : SHAPES[values.shape!].d ** 2,
    notes: 'fp32 AdamW; 2 ranks x 1 thread vs 1 rank x 2 threads on the same global batch; paper = ZeRO paper per-rank memory (float32) and 2Ψ·4 bytes per step; no PyTorch DDP peer yet',
  });
  console.log(`wrote ${path}`);
}

if (process.env.BENCH_DIST_TRAIN_RANK) await rankMain();
else await main();
