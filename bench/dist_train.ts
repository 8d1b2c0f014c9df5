// Data-parallel training by ZeRO stage, side by side in one run: Kestrel's 2 ranks × 1 thread
// against its 1 rank × 2 threads on the same global batch, and against PyTorch DDP (gloo, started
// by torchrun: bench/peers/torch_ddp.py, the same model shape, tokens, micro-batch, AdamW, clip and
// float32) in both layouts. tokens/s = the global batch's tokens / the median step after the first.
// Each rank reports its peak k.memory tags next to the ZeRO paper's per-rank formulas for float32
// AdamW (Rajbhandari et al. 2020, §5: params 4Ψ, grads 4Ψ, moments 8Ψ; stage 1 shards the moments,
// stage 2 the grads too, stage 3 the params too; Kestrel's stage 1-2 shards also keep a float32
// master copy, +4Ψ/N, except on one machine, where the shards are the parameters), its peak RSS, and the bytes it moved per step (ProcessGroup's traffic, the paper's units)
// against the paper's 2Ψ·4 bytes for DDP and stages 1-2 (3Ψ·4, 1.5×, for stage 3; on one machine
// stages 1-2 gather nothing, Ψ·4, and stage 3 neither, Ψ·4). Where the time goes: the milliseconds
// per step a rank waits for its gradient buckets after backward (comm not hidden) and in
// afterOptimizerStep (the parameter all-gather, or in place the ranks meeting), and a 1 rank × 1 thread run (the
// ceiling of 2 ranks × 1 thread is twice it). Every run's losses are checked against the 1-rank
// run's (and PyTorch's 2-rank losses against its 1-process ones) before anything is reported.
// --repeats R runs every layout R times over, each run between two runs of 1 × 2 (its ratio is
// against their geometric mean, and a layout's ratio the median over repeats: the machine's speed
// drifts by tens of percent within minutes); --compare-share adds each layout without shared
// regions (KESTREL_DIST_SHARE=0), starred.
// Run: npm run bench:dist-train -- [--shape smol135m|small|tiny] [--seq N] [--batch ROWS] [--steps 4]
//        [--stages 0,1,2,3] [--ranks 2 (a list: 2,4 with --batch 4; written to dist_train_ranks2_4.json)] [--bucket ELEMENTS (default Kestrel's, 16 MiB of float32)] [--no-peer] [--repeats 1] [--compare-share]
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as k from '../src/index.js';
import { initProcessGroup } from '../src/dist/init.js';
import { launch } from '../src/dist/launch.js';
import { DEFAULT_BUCKET_BYTES, DistributedDataParallel } from '../src/dist/ddp.js';
import { ZeroStage1 } from '../src/dist/zero1.js';
import { ZeroStage2 } from '../src/dist/zero2.js';
import { ZeroStage3 } from '../src/dist/zero3.js';
import type { ProcessGroup } from '../src/dist/process_group.js';
import { Trainer } from '../src/train/trainer.js';
import { decayParamGroups } from '../src/train/param_groups.js';
import type { Batch } from '../src/data/packing.js';
import { buildDecoder, type DecoderShape } from './lib/decoder_bench.js';
import { BENCH_DIR, SHARED_BENCH, median, peerCoretype, runPeer, writeResult } from './lib/report.js';

const { values } = parseArgs({
  options: {
    shape: { type: 'string', default: 'smol135m' }, seq: { type: 'string' }, batch: { type: 'string' }, steps: { type: 'string', default: '4' },
    stages: { type: 'string', default: '0,1,2,3' }, ranks: { type: 'string', default: '2' }, bucket: { type: 'string' }, 'no-peer': { type: 'boolean', default: false },
    repeats: { type: 'string', default: '1' }, 'compare-share': { type: 'boolean', default: false },
  },
});

// DESIGN.md's benchmark shapes (tied embeddings, as bench/lib/decoder_bench.ts builds them); seq and
// batch (the global batch in rows) are short for smol135m so one run takes minutes on 2 cores
const SHAPES: Record<string, DecoderShape & { seq: number; batch: number }> = {
  tiny: { dim: 128, layers: 4, heads: 4, kv: 4, ffn: 352, vocab: 512, seq: 256, batch: 8 },
  small: { dim: 512, layers: 8, heads: 8, kv: 2, ffn: 1376, vocab: 8000, seq: 256, batch: 4 },
  smol135m: { dim: 576, layers: 30, heads: 9, kv: 3, ffn: 1536, vocab: 49152, seq: 64, batch: 2 },
};
const SHAPE = SHAPES[values.shape!];
if (!SHAPE) throw new Error(`bench/dist_train: --shape ${values.shape}: expected one of ${Object.keys(SHAPES).join(', ')}`);
const SEQ = Number(values.seq ?? SHAPE.seq);
const BATCH = Number(values.batch ?? SHAPE.batch);
const STEPS = Number(values.steps);
const RANKS = values.ranks!.split(',').map(Number);
// the global batch is cut into as many micro-batches as the most ranks: each layout accumulates
// its share (1 rank all of them, N ranks micro/N each), so every run sees the same global batches
const MICRO = Math.max(2, ...RANKS);
if (BATCH % MICRO || RANKS.some((n) => MICRO % n)) throw new Error(`bench/dist_train: --batch ${BATCH} must split into ${MICRO} micro-batches and --ranks ${values.ranks} must divide ${MICRO}`);
const BUCKET_ELEMENTS = values.bucket ? Number(values.bucket) : DEFAULT_BUCKET_BYTES / 4;

interface RankResult {
  rank: number;
  losses: number[];
  tokensPerSec: number[];
  peak: { param: number; grad: number; optimizer: number; activation: number };
  maxRssMB: number;
  bytesPerStep: number;
  /** collectives per step that read the peers' shared buffers in place (ProcessGroup.inPlaceCalls) */
  inPlacePerStep: number;
  psi: number;
  /** ms per step waiting for gradient communication after backward (finish) and for the parameter all-gather (afterOptimizerStep) */
  gradWaitMs: number[];
  paramGatherMs: number[];
  /** per step: ms blocked in calls started inside forward and backward (ProcessGroup.blockedMs), waiting for earlier calls and so for the peer */
  blockedMs: number[];
  /** ms per step in optimizer.step() (stage 0: the whole model on every rank; stages 1-2: this rank's shard) */
  optimizerMs: number[];
  /** CPU ms of this process during optimizer.step() */
  optimizerCpuMs: number[];
  /** CPU ms per step of this process, every thread (compute pool and transport worker): less swayed by other jobs than wall time */
  cpuMs: number[];
}

/** A fixed synthetic corpus: row g of the run is the same tokens in every layout (bench/peers/torch_ddp.py builds the same rows). */
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

/**
 * Wraps a method (sync or async) so each call's wall ms lands in `into` and, when given, the
 * process's CPU ms over the call in `cpuInto` (the Trainer calls these once per step).
 */
function timed(obj: object, name: string, into: number[], cpuInto?: number[]): void {
  const o = obj as Record<string, (...a: unknown[]) => unknown>;
  const f = o[name].bind(obj);
  o[name] = (...a: unknown[]) => {
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    const done = (): void => {
      into.push(performance.now() - t0);
      const c = process.cpuUsage(c0);
      cpuInto?.push((c.user + c.system) / 1e3);
    };
    const r = f(...a);
    return r instanceof Promise ? r.finally(done) : (done(), r);
  };
}

async function rankMain(): Promise<void> {
  const stage = process.env.BENCH_STAGE!; // 'none' (one process) or 0, 1, 2, 3
  const model = buildDecoder(values.shape!, SHAPE).train();
  let pg: ProcessGroup | null = null;
  let dp: DistributedDataParallel | null = null;
  const groups = decayParamGroups<{ lr: number; weightDecay: number }>(model, 0.01);
  const gradWaitMs: number[] = [];
  const paramGatherMs: number[] = [];
  if (stage !== 'none') {
    pg = await initProcessGroup();
    // Kestrel's default reduce buckets (what kestrel train uses without a ds_config), or --bucket (the
    // HF Trainer's "auto" is hidden_size², 331776 here: ~6x the collectives, each a point where the
    // ranks wait for each other inside backward)
    const bucketBytes = 4 * BUCKET_ELEMENTS;
    dp = new DistributedDataParallel(pg, bucketBytes);
    await dp.broadcastFromRank0(model.parameters());
    if (stage === '1') dp = new ZeroStage1(pg, groups, bucketBytes);
    if (stage === '2') dp = new ZeroStage2(pg, groups, bucketBytes);
    if (stage === '3') dp = new ZeroStage3(pg, model, groups, { bucketBytes });
    timed(dp, 'finish', gradWaitMs);
    timed(dp, 'afterOptimizerStep', paramGatherMs);
  }
  const shards = dp instanceof ZeroStage2 || dp instanceof ZeroStage3 ? dp.shardGroups : groups;
  const optimizer = new k.optim.AdamW(shards, { lr: 1e-4 });
  const optimizerMs: number[] = [];
  const optimizerCpuMs: number[] = [];
  timed(optimizer, 'step', optimizerMs, optimizerCpuMs);
  const world = pg?.size ?? 1;
  const cpuMs: number[] = [];
  const blockedMs: number[] = [];
  let cpu = process.cpuUsage();
  let blocked = pg?.blockedMs ?? 0;
  const onStep = (): void => {
    const d = process.cpuUsage(cpu);
    cpuMs.push((d.user + d.system) / 1e3);
    cpu = process.cpuUsage();
    blockedMs.push((pg?.blockedMs ?? 0) - blocked);
    blocked = pg?.blockedMs ?? 0;
  };
  const trainer = new Trainer({ onStep, model, data: source(SHAPE.vocab, SEQ), optimizer, batchSize: BATCH / MICRO, gradAccum: MICRO / world, maxSteps: STEPS, clip: 1, dataParallel: dp });
  const moved = (): number => (pg ? Object.values(pg.traffic).reduce((a, b) => a + b, 0) : 0);
  const before = moved();
  const inPlaceBefore = pg?.inPlaceCalls ?? 0;
  const m = await trainer.train();
  const after = moved();
  const peakOf = (tag: 'param' | 'grad' | 'optimizer' | 'activation'): number => Math.max(...m.map((x) => x.mem_peak[tag]));
  const out: RankResult = {
    rank: pg?.rank ?? 0, losses: m.map((x) => x.loss), tokensPerSec: m.map((x) => x.tokens_per_sec),
    peak: { param: peakOf('param'), grad: peakOf('grad'), optimizer: peakOf('optimizer'), activation: peakOf('activation') },
    maxRssMB: process.resourceUsage().maxRSS / 1024, bytesPerStep: (after - before) / STEPS,
    inPlacePerStep: ((pg?.inPlaceCalls ?? 0) - inPlaceBefore) / STEPS, psi: model.parameters().reduce((n, p) => n + p.numel, 0), gradWaitMs, paramGatherMs, optimizerMs, optimizerCpuMs, cpuMs, blockedMs,
  };
  pg?.destroy();
  process.stderr.write(`RESULT ${JSON.stringify(out)}\n`);
}

/** Runs one layout; returns every rank's result, rank 0 first. */
async function run(stage: string, ranks: number, threads: number, share = true): Promise<RankResult[]> {
  const out: RankResult[] = [];
  const r = await launch({
    nproc: ranks, command: process.execPath, args: ['--import', 'tsx', fileURLToPath(import.meta.url), ...process.argv.slice(2)],
    env: { BENCH_DIST_TRAIN_RANK: '1', BENCH_STAGE: stage, KESTREL_NUM_THREADS: String(threads), KESTREL_DIST_SHARE: share ? '1' : '0' }, stdout: 'ignore',
    onStderr: (rank, line) => void (line.startsWith('RESULT ') ? out.push(JSON.parse(line.slice(7)) as RankResult) : process.stderr.write(`[rank ${rank}] ${line}\n`)),
  });
  if (r.exitCode !== 0 || out.length !== ranks) throw new Error(`bench/dist_train: stage ${stage} on ${ranks} ranks failed: ${r.failure?.message ?? 'no result'}`);
  return out.sort((a, b) => a.rank - b.rank);
}

interface TorchResult { torch: string; world: number; threads: number; tokens_per_s: number; step_s_median: number; fwd_bwd_s_median: number; clip_opt_s_median: number; losses: number[]; peak_rss_mib_per_rank: number[]; cpu_s_per_step_median: number }

/**
 * PyTorch's layout: one process, or `ranks` ranks under torchrun. Debian's torch 1.13 on Python
 * 3.11 crashes on torchrun's default "--redirects 0" (Python 3.11's IntFlag no longer iterates its
 * zero member, so the value parses to None); a mapping for a local rank that does not exist (9:2)
 * leaves every real rank unredirected.
 */
function runTorch(ranks: number, threads: number): TorchResult | string {
  const script = join(BENCH_DIR, 'peers', 'torch_ddp.py');
  const args = ['--shared', SHARED_BENCH, '--config', values.shape!, '--seq', String(SEQ), '--batch', String(BATCH), '--micro-batches', String(MICRO),
    '--steps', String(STEPS - 1), '--warmup', '1', '--threads', String(threads), '--bucket-mb', '25'];
  const torchrun = ['torch.distributed.run', '--standalone', '--nproc_per_node', String(ranks), '--redirects', '9:2', '--tee', '9:2', script];
  // runPeer's script slot takes python's -m: the module and its arguments follow
  const r = ranks === 1 ? runPeer(script, args, 900_000, peerCoretype(), { OMP_WAIT_POLICY: 'PASSIVE' })
    : runPeer('-m', [...torchrun, ...args], 900_000, peerCoretype(), { OMP_WAIT_POLICY: 'PASSIVE' });
  const line = r.out?.split('\n').find((l) => l.startsWith('{'));
  return line ? (JSON.parse(line) as TorchResult) : `PyTorch ${ranks} × ${threads} did not run: ${r.why || 'no JSON line'}`;
}

/** The same losses within float32 reduction-order tolerance (the same global batches in every layout). */
function checkLosses(what: string, got: number[], want: number[]): void {
  got.forEach((l, i) => {
    if (Math.abs(l - want[i]) > 1e-4 * Math.abs(want[i])) throw new Error(`bench/dist_train: ${what}: step ${i + 1} loss ${l} vs the 1-process run's ${want[i]}`);
  });
}

/** The ZeRO paper's per-rank float32 bytes at `stage` over `n` ranks (Kestrel's stage 1-2 shards add a float32 master copy, +4Ψ/N). */
function paperBytes(psi: number, stage: number, n: number): { param: number; grad: number; optimizer: number; bytes: number } {
  return {
    param: stage === 3 ? (8 * psi) / n : 4 * psi + (stage >= 1 ? (4 * psi) / n : 0),
    grad: stage >= 2 ? (4 * psi) / n : 4 * psi,
    optimizer: stage >= 1 ? (8 * psi) / n : 8 * psi,
    bytes: (stage === 3 ? 3 : 2) * 4 * psi,
  };
}

const load = (): string => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
const tokS = (r: RankResult): number => median(r.tokensPerSec.slice(1));
/** CPU seconds one global step costs, summed over the layout's ranks (median of the steps after the first) */
const cpuS = (rs: RankResult[]): number => rs.reduce((a, r) => a + median(r.cpuMs.slice(1)), 0) / 1e3;
/** the same for the CPU seconds spent in optimizer.step() */
const optimCpuS = (rs: RankResult[]): number => rs.reduce((a, r) => a + median(r.optimizerCpuMs.slice(1)), 0) / 1e3;
const MB = (b: number): string => (b / 2 ** 20).toFixed(0);

async function main(): Promise<void> {
  const loadBefore = load();
  const [one] = await run('none', 1, 2);
  const [oneThread] = await run('none', 1, 1);
  checkLosses('1 rank × 1 thread', oneThread.losses, one.losses);
  const psi = one.psi;
  /**
   * A layout's CPU seconds per step split into optimizer.step(), forward+backward (the 1 rank × 1
   * thread run's, which has no pool or communication overhead) and the rest (communication: copies
   * into buckets, the transport's sums and copies, waits; and pool overhead). With every core busy,
   * 1 × 2's CPU seconds over these are the most this layout can reach against it.
   */
  const cpuSplit = (rs: RankResult[]): { optimizer: number; forwardBackward: number; communicationAndOther: number; ceilingVs1Rank2Threads: number } => {
    const forwardBackward = cpuS([oneThread]) - optimCpuS([oneThread]);
    return { optimizer: optimCpuS(rs), forwardBackward, communicationAndOther: cpuS(rs) - optimCpuS(rs) - forwardBackward, ceilingVs1Rank2Threads: cpuS([one]) / cpuS(rs) };
  };
  const peer = values['no-peer'] ? null : { one: runTorch(1, 2), two: RANKS.includes(2) ? runTorch(2, 1) : 'not asked (--ranks has no 2)' };
  if (peer && typeof peer.one !== 'string' && typeof peer.two !== 'string') checkLosses('PyTorch 2 ranks', peer.two.losses, peer.one.losses);
  const torchTwo = peer && typeof peer.two !== 'string' ? peer.two : null;
  console.log(`${values.shape}: Ψ = ${psi} parameters, global batch ${BATCH} × ${SEQ} tokens in ${MICRO} micro-batches, ${STEPS} steps (median of the last ${STEPS - 1}); load before ${loadBefore}`);
  console.log(`Kestrel 1 rank × 2 threads ${tokS(one).toFixed(0)} tok/s (${cpuS([one]).toFixed(2)} CPU s/step, optimizer ${median(one.optimizerMs.slice(1)).toFixed(0)} ms), 1 rank × 1 thread ${tokS(oneThread).toFixed(0)} tok/s (${cpuS([oneThread]).toFixed(2)} CPU s/step; 2 ranks × 1 thread can reach at most ${(2 * tokS(oneThread) / tokS(one)).toFixed(2)}× of 1 × 2)`);
  if (peer) for (const [name, p] of Object.entries(peer)) console.log(typeof p === 'string' ? p : `PyTorch ${p.torch} ${p.world} × ${p.threads} thread(s): ${p.tokens_per_s.toFixed(0)} tok/s (${p.cpu_s_per_step_median.toFixed(2)} CPU s/step, all ranks), peak RSS ${p.peak_rss_mib_per_rank.map((x) => x.toFixed(0)).join('/')} MB (${name})`);
  // every layout (with shared regions and, for --compare-share, without) runs between two runs of
  // 1 × 2: a layout's ratio is the median over repeats of its tok/s over their geometric mean
  const layouts = RANKS.flatMap((n) => values.stages!.split(',').map(Number).flatMap((stage) => (values['compare-share'] ? [true, false] : [true]).map((share) => ({ n, stage, share }))));
  const runs = new Map<(typeof layouts)[number], { ranks: RankResult[]; vsOne: number }[]>(layouts.map((l) => [l, []]));
  const oneRuns = [one];
  for (let rep = 0; rep < Number(values.repeats); rep++) {
    for (const l of layouts) {
      const ranks = await run(String(l.stage), l.n, 1, l.share);
      for (const r of ranks) checkLosses(`stage ${l.stage} on ${l.n} ranks, rank ${r.rank}`, r.losses, one.losses);
      const before = oneRuns.at(-1)!;
      oneRuns.push((await run('none', 1, 2))[0]);
      runs.get(l)!.push({ ranks, vsOne: tokS(ranks[0]) / Math.sqrt(tokS(before) * tokS(oneRuns.at(-1)!)) });
    }
  }
  if (oneRuns.length > 1) console.log(`1 rank × 2 threads, the runs around the layouts: ${oneRuns.map((r) => tokS(r).toFixed(0)).join(', ')} tok/s`);
  console.log('N stage  tok/s  vs1×2 vsTorch CPU s | param MB (paper)  grad MB (paper)  optim MB (paper)  RSS MB | MB moved/step (paper) | grad wait  gather  blocked  optim  step ms | CPU s: optim comm+other, ceiling');
  const rows = [];
  for (const l of layouts) {
    const { n, stage } = l;
    const paper = paperBytes(psi, stage, n);
    const byRepeat = runs.get(l)!;
    const vsOne = median(byRepeat.map((x) => x.vsOne));
    // the repeat whose ratio is the median's (or nearest it) gives the row's other columns
    const { ranks } = byRepeat.reduce((a, b) => (Math.abs(b.vsOne - vsOne) < Math.abs(a.vsOne - vsOne) ? b : a));
    const tok = tokS(ranks[0]);
    const vsTorch = n === 2 && torchTwo ? tok / torchTwo.tokens_per_s : null;
    const gradWait = median(ranks[0].gradWaitMs.slice(1));
    const gather = median(ranks[0].paramGatherMs.slice(1));
    rows.push({
      ranks: n, stage, sharedRegions: l.share, tokensPerSec: tok, ratioVs1Rank2Threads: vsOne, ratioVs1Rank2ThreadsByRepeat: byRepeat.map((x) => x.vsOne), ratioVsTorchDdp: vsTorch, cpuSecondsPerStepAllRanks: cpuS(ranks), cpuSplit: cpuSplit(ranks), paper,
      perRank: ranks.map((r) => ({ rank: r.rank, peak: r.peak, maxRssMB: r.maxRssMB, bytesPerStep: r.bytesPerStep, inPlacePerStep: r.inPlacePerStep, gradWaitMsMedian: median(r.gradWaitMs.slice(1)), paramGatherMsMedian: median(r.paramGatherMs.slice(1)), blockedMsMedian: median(r.blockedMs.slice(1)), optimizerMsMedian: median(r.optimizerMs.slice(1)), stepMsMedian: (BATCH * SEQ * 1e3) / tok })),
    });
    const p = ranks[0].peak;
    console.log(`${n} ${`${stage}${l.share ? '' : '*'}`.padStart(5)} ${tok.toFixed(0).padStart(6)} ${vsOne.toFixed(2).padStart(6)} ${(vsTorch?.toFixed(2) ?? '-').padStart(6)} ${cpuS(ranks).toFixed(2).padStart(5)} | ${MB(p.param).padStart(8)} (${MB(paper.param)})  ${MB(p.grad).padStart(8)} (${MB(paper.grad)})  ${MB(p.optimizer).padStart(8)} (${MB(paper.optimizer)})  ${ranks.map((r) => r.maxRssMB.toFixed(0)).join('/')} | ${MB(ranks[0].bytesPerStep).padStart(8)} (${MB(paper.bytes)}) | ${gradWait.toFixed(0).padStart(9)} ${gather.toFixed(0).padStart(7)} ${median(ranks[0].blockedMs.slice(1)).toFixed(0).padStart(8)} ${median(ranks[0].optimizerMs.slice(1)).toFixed(0).padStart(6)} ${((BATCH * SEQ * 1e3) / tok).toFixed(0).padStart(6)} | ${cpuSplit(ranks).optimizer.toFixed(2)} ${cpuSplit(ranks).communicationAndOther.toFixed(2)}, ${cpuSplit(ranks).ceilingVs1Rank2Threads.toFixed(2)}${byRepeat.length > 1 ? ` | vs1×2 by repeat ${byRepeat.map((x) => x.vsOne.toFixed(2)).join(' ')}` : ''}`);
  }
  if (values['compare-share']) console.log('* without shared regions (KESTREL_DIST_SHARE=0: every collective on private buffers, read with cross-memory attach or through the slots, the all-gather path for ZeRO 1-2 parameters)');
  // the committed 2-rank run keeps its name; other rank lists (the 4-rank memory table) get their own file
  const path = writeResult(values.ranks === '2' ? 'dist_train' : `dist_train_ranks${RANKS.join('_')}`, {
    load_before: loadBefore, load_after: load(),
    shape: { name: values.shape, ...SHAPE, seq: SEQ, batch: BATCH, microBatches: MICRO }, steps: STEPS, psi, bucketElements: BUCKET_ELEMENTS,
    kestrel: {
      oneRankTwoThreads: { tokensPerSec: tokS(one), cpuSecondsPerStep: cpuS([one]), optimizerCpuSeconds: optimCpuS([one]), optimizerMsMedian: median(one.optimizerMs.slice(1)), peak: one.peak, maxRssMB: one.maxRssMB },
      oneRankTwoThreadsAroundLayouts: oneRuns.map((r) => tokS(r)),
      oneRankOneThread: { tokensPerSec: tokS(oneThread), cpuSecondsPerStep: cpuS([oneThread]), optimizerCpuSeconds: optimCpuS([oneThread]), optimizerMsMedian: median(oneThread.optimizerMs.slice(1)), peak: oneThread.peak, maxRssMB: oneThread.maxRssMB },
    },
    torch: peer ?? 'skipped (--no-peer)',
    rows,
    notes: 'fp32 AdamW (lr 1e-4, wd 0.01 on matrices), clip 1; N ranks x 1 thread vs 1 rank x 2 threads on the same global batch (each layout run between two 1 x 2 runs, against their geometric mean; the median over repeats); vsTorch = Kestrel N x 1 / PyTorch DDP (gloo, torchrun, bucket_cap_mb 25) N x 1; paper = ZeRO paper per-rank memory (float32, + Kestrel\'s 4Ψ/N master shard at stages 1-2) and 2Ψ·4 bytes per step (3Ψ·4 at stage 3); grad wait = ms a rank waits after backward for its gradient buckets, gather = ms in afterOptimizerStep (the parameter all-gather after the update; in place on one machine, the ranks meeting), blocked = ms per step the rank\'s thread is blocked starting a collective inside forward or backward (each start waits for the call before it, and so for the slower rank), optim = ms in optimizer.step(), step = the global step wall ms; CPU s = CPU seconds of a global step summed over ranks and threads (process CPU time: less swayed by a loaded machine than tok/s); cpuSplit = those in optimizer.step(), in forward+backward (the 1 rank x 1 thread run less its optimizer) and the rest (communication and overhead), and 1x2 CPU s / this layout CPU s, the most it can reach against 1x2 when every core is busy',
  });
  console.log(`load after ${load()}; wrote ${path}`);
}

if (process.env.BENCH_DIST_TRAIN_RANK) await rankMain();
else await main();
