// Fine-tuning benchmark (issue 5): one training step (forward, loss, backward, AdamW) of full
// fine-tuning, LoRA (r 16, every linear layer but the head) and QLoRA (the same adapters on an NF4
// base) on random models with DESIGN.md's smol135m and qwen05b shapes, batch 1 x 256 tokens, next
// to PyTorch CPU running the same model with a plain LoRA (../shared/bench/torch_llama_bench.py,
// modes train and lora: frozen base, two extra matmuls per linear, no fusion).
// Each (config, mode) runs in a fresh process so its peak memory (by tag, and RSS) is its own.
// --dtype (default: kestrel finetune's, bf16 where the CPU multiplies bf16 natively) runs the step under
// autocast with the frozen base stored in that dtype (castFrozenLinears); PyTorch then also runs LoRA under
// bf16 autocast (bench/peers/torch_lora_bf16.py, fp32 or bf16 frozen weights) and the best of its settings
// is the ratio's peer.
// Run: node --import tsx bench/lora.ts [--configs smol135m,qwen05b] [--modes full,lora,qlora] [--no-peer]
//      [--dtype fp32|bf16] [--worker --profile: one (config, mode) with k.profile's table of the timed steps]
//      [--checkpointing full] (finetune's default; results to lora_checkpointing_full.json)
//      [--optimizer-in-backward] (each weight updated as its gradient completes; results to lora[_checkpointing_full]_in_backward.json)
//      [--checkpoint-layers N] (with --checkpointing full: only the first N layers recompute; the model's checkpointLayers)
// Full fine-tuning at its smallest memory, beside PyTorch's fastest full step (fp32 or bf16 autocast), with both
// peaks by part: npm run bench:full-ft (= --configs smol135m --modes full --optimizer-in-backward --checkpointing full).
// --checkpoint-layers N recomputes only the first N layers: on smol135m each layer kept adds ~7 MB of activations;
// with 22 of 30 the peak RSS was 1966-1973 MB against 1923-1928 for all 30, at a CPU time per step within the noise.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as k from '../src/index.js';
import { loadNative } from '../src/backend/addon.js';
import { finetuneDtype } from '../src/cli/finetune.js';
import { decoderConfig } from '../src/models/registry.js';
import { accumulateGradients } from '../src/train/step.js';
import { decayParamGroups } from '../src/train/param_groups.js';
import { BENCH_DIR, SHARED_BENCH, median, peerCoretype, runPeer, writeResult } from './lib/report.js';

const SHAPES: Record<string, { dim: number; layers: number; heads: number; kv: number; ffn: number; vocab: number; torch: string }> = {
  smol135m: { dim: 576, layers: 30, heads: 9, kv: 3, ffn: 1536, vocab: 49152, torch: 'smollm135m' },
  qwen05b: { dim: 896, layers: 24, heads: 14, kv: 2, ffn: 4864, vocab: 151936, torch: 'qwen05b' },
};
const SEQ = 256;
const BATCH = 1;
// PyTorch's lora mode uses r 16, alpha 32; the scale does not change the work.
const LORA = { r: 16, alpha: 32, targetModules: 'all-linear' as const };
type Mode = 'full' | 'lora' | 'qlora';

interface WorkerResult {
  config: string;
  mode: Mode;
  trainable: number;
  stepMs: number;
  tokPerSec: number;
  peakMB: Record<string, number>;
  /** every tag at the moment the total peaked (k.memory's atPeak): what the peak is made of */
  atPeakMB: Record<string, number>;
  /** the caching allocator's bytes kept for reuse and held from the OS (live + cached), after the last step */
  cachedMB: number;
  reservedMB: number;
  /** minor page faults (first touches of fresh pages) and CPU time (user + system) per timed step: what the load cannot inflate as it does wall time */
  faultsPerStep: number;
  cpuMsPerStep: number;
  maxRssMB: number;
}

/** One (config, mode): builds the model, runs warm-up + timed steps, reports medians and peaks. */
function worker(config: string, mode: Mode, steps: number, checkpointing: 'none' | 'full', dtype: 'fp32' | 'bf16', profile = false, inBackward = false, checkpointLayers: number | null = null): WorkerResult {
  const s = SHAPES[config];
  k.manualSeed(0);
  const model = new k.CausalLM(decoderConfig({
    model_type: 'llama', vocab_size: s.vocab, hidden_size: s.dim, intermediate_size: s.ffn, num_hidden_layers: s.layers,
    num_attention_heads: s.heads, num_key_value_heads: s.kv, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: true,
    max_position_embeddings: 4096,
  }, `${config} (bench)`), {});
  model.checkpointing = checkpointing;
  model.model.checkpointLayers = checkpointLayers;
  if (mode === 'qlora') k.quant.quantizeModel(model, { type: 'nf4' });
  if (mode !== 'full') k.lora.injectLora(model, LORA);
  if (mode !== 'full' && dtype === 'bf16') k.lora.castFrozenLinears(model, 'bfloat16');
  const autocast = dtype === 'bf16' ? 'bfloat16' : null;
  const trainable = model.parameters().filter((p) => p.requiresGrad).reduce((n, p) => n + p.numel, 0);
  const opt = new k.optim.AdamW(decayParamGroups(model, 0.01), { lr: 1e-4 });
  // --optimizer-in-backward: each weight is updated as its gradient completes, which is freed
  const early = inBackward ? new k.optim.OptimizerInBackward(opt) : null;
  model.train();
  const gen = new k.Generator(1);
  const times: number[] = [];
  let [faults0, cpu0] = [0, 0];
  k.memory.resetPeak();
  for (let i = 0; i < steps + 2; i++) {
    const ids = (k.randint(0, s.vocab, [BATCH, SEQ], { generator: gen }).toArray() as number[][]);
    const batch = { inputIds: ids, labels: ids, attentionMask: ids.map((r) => r.map(() => 1)) };
    if (profile && i === 2) k.profile.start();
    if (i === 2) [faults0, cpu0] = [process.resourceUsage().minorPageFault, cpuMs()];
    const t0 = performance.now();
    if (early) early.step(() => accumulateGradients(model, [batch], { autocast }));
    else {
      accumulateGradients(model, [batch], { autocast });
      opt.step();
      opt.zeroGrad();
    }
    if (i >= 2) times.push(performance.now() - t0);
  }
  if (profile) {
    k.profile.stop();
    process.stderr.write(k.profile.report({ steps, top: 25 }));
  }
  const faultsPerStep = (process.resourceUsage().minorPageFault - faults0) / steps;
  const cpuMsPerStep = (cpuMs() - cpu0) / steps;
  const { peak, atPeak, cached, reserved } = k.memory.stats();
  const mb = (b: number): number => Math.round(b / 2 ** 20);
  const byTag = (c: k.MemoryStats['peak']): Record<string, number> => Object.fromEntries(Object.entries(c).map(([t, b]) => [t, mb(b)]));
  const stepMs = median(times);
  return {
    config, mode, trainable, stepMs, tokPerSec: (BATCH * SEQ) / (stepMs / 1e3),
    peakMB: byTag(peak), atPeakMB: byTag(atPeak), cachedMB: mb(cached), reservedMB: mb(reserved), faultsPerStep, cpuMsPerStep, maxRssMB: Math.round(process.resourceUsage().maxRSS / 1024),
  };
}

/** user + system CPU time of this process, ms */
function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e3;
}

function runWorker(config: string, mode: Mode, steps: number, checkpointing: string, dtype: string, inBackward: boolean, checkpointLayers: number | null): WorkerResult {
  const self = fileURLToPath(import.meta.url);
  const args = ['--worker', '--configs', config, '--modes', mode, '--steps', String(steps), '--checkpointing', checkpointing, '--dtype', dtype,
    ...(inBackward ? ['--optimizer-in-backward'] : []), ...(checkpointLayers === null ? [] : ['--checkpoint-layers', String(checkpointLayers)])];
  const r = spawnSync(process.execPath, ['--import', 'tsx', self, ...args], { encoding: 'utf8', maxBuffer: 16 << 20 });
  if (r.status !== 0) throw new Error(`${config} ${mode} failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as WorkerResult;
}

/** torch_llama_bench.py's modes for ours: train for full, lora for lora/qlora. */
const torchModes = (modes: Mode[]): string => [...(modes.includes('full') ? ['train'] : []), ...(modes.some((m) => m !== 'full') ? ['lora'] : [])].join(',');

/**
 * PyTorch's full fine-tuning peak RSS by part, from Ψ parameters: float32 weights 4Ψ, gradients 4Ψ and
 * AdamW's two moments 8Ψ (all alive at its optimizer step), the rest being activations (with autocast's
 * bf16 weight copies and the float32 logits), the framework itself and the allocator's slack.
 */
function torchFullBreakdownMB(params: number, peakRssMiB: number): Record<string, number> {
  const mb = (b: number): number => Math.round(b / 2 ** 20);
  const [weights, grads, adam] = [mb(4 * params), mb(4 * params), mb(8 * params)];
  return { peakRss: Math.round(peakRssMiB), params: weights, grads, adam, activationsRuntimeAndSlack: Math.round(peakRssMiB) - weights - grads - adam };
}

interface PeerRow { config: string; mode: string; tokens_per_s: number; step_s_median?: number; peak_rss_mib?: number; [k: string]: unknown }

async function main(): Promise<void> {
  const { values } = parseArgs({ options: {
    configs: { type: 'string', default: 'smol135m,qwen05b' }, modes: { type: 'string', default: 'full,lora,qlora' },
    steps: { type: 'string', default: '4' }, checkpointing: { type: 'string', default: 'none' },
    'no-peer': { type: 'boolean', default: false }, worker: { type: 'boolean', default: false }, dtype: { type: 'string' }, profile: { type: 'boolean', default: false },
    'optimizer-in-backward': { type: 'boolean', default: false }, 'checkpoint-layers': { type: 'string' },
  } });
  const checkpointLayers = values['checkpoint-layers'] === undefined ? null : Number(values['checkpoint-layers']);
  const inBackward = values['optimizer-in-backward'] === true;
  const names = values.configs!.split(',');
  const modes = values.modes!.split(',') as Mode[];
  const steps = Number(values.steps);
  const ckpt = values.checkpointing as 'none' | 'full';
  const dtype = (values.dtype ?? finetuneDtype(loadNative()?.info() ?? null).dtype) as 'fp32' | 'bf16';
  if (dtype !== 'fp32' && dtype !== 'bf16') throw new Error(`--dtype must be fp32 or bf16, got '${String(dtype)}'`);
  if (values.worker) {
    process.stdout.write(JSON.stringify(worker(names[0], modes[0], steps, ckpt, dtype, values.profile, inBackward, checkpointLayers)) + '\n');
    return;
  }
  const rows: WorkerResult[] = [];
  for (const name of names)
    for (const mode of modes) {
      const r = runWorker(name, mode, steps, ckpt, dtype, inBackward, checkpointLayers);
      rows.push(r);
      const at = r.atPeakMB;
      console.log(`${name} ${mode.padEnd(5)}: ${r.stepMs.toFixed(0)} ms/step, ${r.tokPerSec.toFixed(1)} tok/s, peak ${r.peakMB.total} MB = param ${at.param} + grad ${at.grad} + optimizer ${at.optimizer} + activation ${at.activation} + other ${at.other} at the peak; allocator cache ${r.cachedMB} MB (reserved ${r.reservedMB}), max RSS ${r.maxRssMB} MB; ${r.faultsPerStep.toFixed(0)} page faults and ${r.cpuMsPerStep.toFixed(0)} CPU ms per step`);
    }
  let peer: PeerRow[] | string = 'not run (--no-peer)';
  let peerRuns: Record<string, unknown>[] = [];
  if (!values['no-peer']) {
    // OpenBLAS 0.3.21 takes newer Intel CPUs for Prescott (SSE3); the forced run gives PyTorch the
    // kernels this CPU can run, and each row keeps the faster of the two, so no ratio flatters Kestrel.
    const runs: PeerRow[][] = [];
    for (const coretype of [undefined, peerCoretype()]) {
      const tmp = join(process.env.TMPDIR ?? '/tmp', `torch-lora-${process.pid}.json`);
      const r = runPeer(join(SHARED_BENCH, 'torch_llama_bench.py'), ['--configs', names.map((n) => SHAPES[n].torch).join(','), '--modes', torchModes(modes), '--runs', '1', '--steps', String(steps), '--json', tmp], undefined, coretype);
      if (r.out === null) peer = `PyTorch peer unavailable: ${r.why}`;
      else runs.push((JSON.parse(readFileSync(tmp, 'utf8')) as { results: PeerRow[] }).results.map((x) => ({ ...x, openblas_coretype: coretype ?? 'auto' })));
    }
    // PyTorch's LoRA under bf16 autocast (with float32 and with bf16 frozen weights), and its full
    // fine-tuning under bf16 autocast, run when Kestrel runs bf16
    const bf16Variants = [...(modes.some((m) => m !== 'full') ? ['autocast', 'bf16-base'] : []), ...(modes.includes('full') ? ['full-autocast'] : [])];
    if (dtype === 'bf16')
      for (const name of names)
        for (const variant of bf16Variants)
          for (const coretype of [undefined, peerCoretype()]) {
            const r = runPeer(join(BENCH_DIR, 'peers', 'torch_lora_bf16.py'), ['--shared', SHARED_BENCH, '--config', SHAPES[name].torch, '--variant', variant, '--steps', String(steps)], undefined, coretype, { OMP_WAIT_POLICY: 'PASSIVE' });
            if (r.out !== null) runs.push([{ ...(JSON.parse(r.out.trim().split('\n').at(-1)!) as PeerRow), openblas_coretype: coretype ?? 'auto' }]);
            else console.log(`PyTorch bf16 LoRA (${variant}) unavailable: ${r.why}`);
          }
    const all = runs.flat();
    // per (config, mode): the fastest of every setting PyTorch ran
    if (all.length) peer = all.filter((row, i) => all.findIndex((x) => x.config === row.config && x.mode === row.mode) === i)
      .map((row) => all.filter((x) => x.config === row.config && x.mode === row.mode).reduce((a, b) => (b.tokens_per_s > a.tokens_per_s ? b : a)));
    for (const r of all) console.log(`  torch ${r.config} ${r.mode}${r.variant ? ` (${String(r.variant)})` : ' (fp32)'} OpenBLAS ${String(r.openblas_coretype)}: ${r.tokens_per_s.toFixed(1)} tok/s`);
    peerRuns = all.map((r) => ({ config: r.config, mode: r.mode, variant: r.variant ?? 'fp32', openblas_coretype: r.openblas_coretype, tokens_per_s: r.tokens_per_s }));
  }
  const summary: Record<string, unknown>[] = [];
  for (const name of names) {
    const by = (m: Mode): WorkerResult | undefined => rows.find((r) => r.config === name && r.mode === m);
    const torch = (m: string): PeerRow | undefined => (typeof peer === 'string' ? undefined : peer.find((p) => p.config === SHAPES[name].torch && p.mode === m));
    const [full, lora, qlora] = [by('full'), by('lora'), by('qlora')];
    const tl = torch('lora');
    const tf = torch('train');
    const s = {
      config: name,
      loraVsTorchLoraTokPerSec: lora && tl ? lora.tokPerSec / tl.tokens_per_s : null,
      fullVsTorchTrainTokPerSec: full && tf ? full.tokPerSec / tf.tokens_per_s : null,
      // against the fastest PyTorch full step's own peak RSS
      fullRssOfTorchTrain: full && tf?.peak_rss_mib ? full.maxRssMB / tf.peak_rss_mib : null,
      // the two peaks side by side, by part
      fullMemoryMB: full ? { kestrel: { maxRss: full.maxRssMB, atPeak: full.atPeakMB, cached: full.cachedMB }, torch: tf?.peak_rss_mib ? torchFullBreakdownMB(full.trainable, tf.peak_rss_mib) : null } : null,
      loraPeakOfFull: lora && full ? lora.peakMB.total / full.peakMB.total : null,
      qloraPeakOfFull: qlora && full ? qlora.peakMB.total / full.peakMB.total : null,
      qloraStepOfLora: qlora && lora ? qlora.stepMs / lora.stepMs : null,
      torch: { lora: tl ?? null, train: tf ?? null },
    };
    summary.push(s);
    const f = (x: number | null, pct = false): string => (x === null ? '-' : pct ? `${(100 * x).toFixed(0)}%` : `${x.toFixed(2)}x`);
    console.log(`\n${name}: LoRA vs PyTorch LoRA tok/s ${f(s.loraVsTorchLoraTokPerSec)} (target >= 2x); full vs PyTorch full ${f(s.fullVsTorchTrainTokPerSec)} (target >= 2x) at ${f(s.fullRssOfTorchTrain)} its peak RSS (target <= 0.6x)`);
    console.log(`  LoRA peak ${f(s.loraPeakOfFull, true)} of full (target <= 40%); QLoRA peak ${f(s.qloraPeakOfFull, true)} of full (target <= 25%) at ${f(s.qloraStepOfLora)} LoRA's step time (target <= 1.1x)`);
  }
  if (typeof peer === 'string') console.log(peer);
  // the headline run matches PyTorch's (no checkpointing); the finetune default goes to its own file
  const path = writeResult(`lora${ckpt === 'none' ? '' : `_checkpointing_${ckpt}`}${inBackward ? '_in_backward' : ''}`, {
    threads: 'all cores (KESTREL_NUM_THREADS unset)', batch: BATCH, seq: SEQ, lora: LORA, checkpointing: ckpt, checkpointLayers, optimizerInBackward: inBackward, steps, dtype,
    loadavg: readFileSync('/proc/loadavg', 'utf8').trim(), rows, summary, peerRuns, peer: typeof peer === 'string' ? peer : 'torch_llama_bench.py --modes train,lora (r 16, alpha 32, fp32, 2 threads) and, under --dtype bf16, peers/torch_lora_bf16.py (bf16 autocast: LoRA with fp32 or bf16 frozen weights, full fine-tuning); per row the fastest of those settings and of OpenBLAS auto / forced core type',
  });
  console.log(`wrote ${path}`);
}

await main();
