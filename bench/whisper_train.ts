// Whisper training step (issue 19, benchmarks): forward, loss, backward and AdamW of a
// Whisper-base-shaped model (d 512, 6 + 6 layers, 8 heads, ffn 2048, vocab 51865, 30 s inputs)
// in float32 against PyTorch on the same batch shape in the same run (bench/peers/torch_whisper_train.py,
// Whisper written out in torch since transformers is not installed here). Validated first: both
// implementations load the tiny random fixture checkpoint and reproduce transformers' golden loss.
// Reports label tokens/s, the median step and the peak memory above the process's footprint
// before the model was built (peak RSS for both; Kestrel's own counters too).
// Run: node --import tsx bench/whisper_train.ts [--batch 2] [--tokens 64] [--runs 3] [--threads 2] [--no-peer]
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as k from '../src/index.js';
import { loadNative } from '../src/backend/addon.js';
import { SafetensorsFile } from '../src/io/safetensors.js';
import { WhisperForConditionalGeneration, loadWhisper, whisperConfig } from '../src/models/whisper.js';
import { BENCH_DIR, median, runPeerFastest, writeResult } from './lib/report.js';

const FIXTURE = join(BENCH_DIR, '..', '..', 'shared', 'fixtures', 'audio', 'models', 'whisper-tiny-random');
// openai/whisper-base's config.json shape fields
const BASE = {
  model_type: 'whisper', vocab_size: 51865, num_mel_bins: 80, d_model: 512, encoder_layers: 6, decoder_layers: 6,
  encoder_attention_heads: 8, decoder_attention_heads: 8, encoder_ffn_dim: 2048, decoder_ffn_dim: 2048,
  max_source_positions: 1500, max_target_positions: 448, pad_token_id: 50257, decoder_start_token_id: 50258,
};

const { values: args } = parseArgs({
  options: {
    batch: { type: 'string', default: '2' }, tokens: { type: 'string', default: '64' }, runs: { type: 'string', default: '3' },
    threads: { type: 'string', default: '2' }, 'no-peer': { type: 'boolean', default: false },
  },
});
const [batch, tokens, runs, threads] = [Number(args.batch), Number(args.tokens), Number(args.runs), Number(args.threads)];
const addon = loadNative();
if (!addon) throw new Error('bench/whisper_train.ts needs the cpu backend (npm run build)');
addon.setThreads(threads);
k.setDefaultBackend('cpu');

const rssMb = (field: 'VmRSS' | 'VmHWM'): number => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync('/proc/self/status', 'utf8'))![1]) / 1024;

// validate: the fixture checkpoint reproduces transformers' loss
let validation: number | null = null;
try {
  const tiny = loadWhisper(FIXTURE);
  using g = new SafetensorsFile(join(FIXTURE, 'goldens.safetensors'));
  validation = k.noGrad(() => k.tidy(() => Math.abs(tiny.forward({ inputFeatures: g.tensor('input_features'), labels: g.tensor('labels') }).loss!.item() - g.tensor('loss').item())));
  tiny.dispose();
  if (!(validation <= 1e-5)) throw new Error(`Kestrel Whisper loss differs from transformers' by ${validation}`);
  console.log(`validated: tiny fixture loss within ${validation.toExponential(2)} of transformers'`);
} catch (e) {
  if ((e as NodeJS.ErrnoException).code !== 'ENOENT' && !String(e).includes('not found')) throw e;
  console.log('fixture absent: validation skipped');
}

const before = rssMb('VmRSS');
k.manualSeed(0);
const model = new WhisperForConditionalGeneration(whisperConfig(BASE, 'whisper-base shape')).train();
const params = model.parameters().filter((p) => p.requiresGrad);
const opt = new k.optim.AdamW(params, { lr: 1e-5 });
const features = k.randn([batch, 80, 3000]);
const labels = k.randint(0, BASE.vocab_size - 20, [batch, tokens]);
const times: number[] = [];
let loss = 0;
for (let i = 0; i <= runs; i++) {
  const t0 = performance.now();
  k.tidy(() => {
    const out = model.forward({ inputFeatures: features, labels });
    out.loss!.backward();
    loss = out.loss!.item();
  });
  opt.step();
  opt.zeroGrad();
  if (i) times.push((performance.now() - t0) / 1000); // step 0 is the warm-up (AdamW state, allocator)
}
const kestrel = {
  median_s: median(times), times_s: times, loss, tokens_per_s: (batch * tokens) / median(times),
  peak_rss_above_start_mb: rssMb('VmHWM') - before, counted_peak_mb: k.memory.stats('cpu').peak.total / 2 ** 20,
  parameters: params.reduce((s, p) => s + p.numel, 0),
};

let peer: Record<string, unknown> = { note: 'not run (--no-peer)' };
if (!args['no-peer']) {
  const req = { config: BASE, batch, tokens, runs, threads, fixture: FIXTURE };
  const r = runPeerFastest<{ median_s: number; peak_rss_mb: number; rss_before_model_mb: number }>(join(BENCH_DIR, 'peers', 'torch_whisper_train.py'), [JSON.stringify(req)], (p) => p.median_s, 1_800_000, { OMP_WAIT_POLICY: 'PASSIVE' });
  if (r.row === null) peer = { note: `torch peer failed: ${r.why}` };
  else {
    const p = r.row;
    peer = { ...p, tokens_per_s: (batch * tokens) / p.median_s, peak_rss_above_start_mb: p.peak_rss_mb - p.rss_before_model_mb };
  }
}

const speed = typeof peer.median_s === 'number' ? (peer.median_s as number) / kestrel.median_s : null;
const memory = typeof peer.peak_rss_above_start_mb === 'number' ? kestrel.peak_rss_above_start_mb / (peer.peak_rss_above_start_mb as number) : null;
console.log(`Whisper-base-shaped training step (fp32), batch ${batch} x 30 s, ${tokens} label tokens, ${threads} threads`);
console.log('| impl | median step s | label tokens/s | peak RSS above start MB |\n|---|---|---|---|');
console.log(`| Kestrel | ${kestrel.median_s.toFixed(2)} | ${kestrel.tokens_per_s.toFixed(1)} | ${kestrel.peak_rss_above_start_mb.toFixed(0)} |`);
if (speed !== null) console.log(`| PyTorch ${peer.torch} | ${(peer.median_s as number).toFixed(2)} | ${(peer.tokens_per_s as number).toFixed(1)} | ${(peer.peak_rss_above_start_mb as number).toFixed(0)} |`);
console.log(speed !== null ? `speed ${speed.toFixed(2)}x PyTorch (target >= 1.5x), memory ${memory!.toFixed(2)}x (target <= 0.8x)` : String(peer.note));
const path = writeResult('whisper_train', {
  bench: 'whisper_train', cpuInfo: addon.info(), threads, loadavg_1_5_15: loadavg(), config: { ...BASE, batch, tokens, runs, dtype: 'float32' },
  validation_loss_abs_error: validation, kestrel, peer, speed_ratio_vs_pytorch: speed, memory_ratio_vs_pytorch: memory,
});
console.log(`wrote ${path}`);
