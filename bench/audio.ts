// Whisper 80-bin log-mel extraction (issue 19, benchmarks): real-time factor (seconds of audio per
// second of compute) of whisperLogMel (native STFT kernel + the mel bank as one matmul) against
// torchaudio's MelSpectrogram with Whisper's formula (bench/peers/torch_logmel.py) on the same
// 30 s windows of speech (the fixture clip tiled), in the same run, both with 2 threads. Validated
// first: Kestrel's window 0 against the transformers golden (when the clip is the fixture's) and
// against the peer's output, <= 1e-4 of peak.
// Run: node --import tsx bench/audio.ts [--minutes 10] [--runs 5] [--threads 2] [--no-peer]
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as k from '../src/index.js';
import { loadNative } from '../src/backend/addon.js';
import { SafetensorsFile } from '../src/io/safetensors.js';
import { BENCH_DIR, median, runPeer, writeResult } from './lib/report.js';

const WINDOW = 480000; // 30 s at 16 kHz
const FIXTURES = join(BENCH_DIR, '..', '..', 'shared', 'fixtures', 'audio');

const { values: args } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    runs: { type: 'string', default: '5' },
    threads: { type: 'string', default: '2' },
    'no-peer': { type: 'boolean', default: false },
  },
});
const windows = Math.max(1, Math.round((Number(args.minutes) * 60 * 16000) / WINDOW));
const runs = Number(args.runs);
const threads = Number(args.threads);
const addon = loadNative();
if (!addon) throw new Error('bench/audio.ts needs the cpu backend (npm run build)');
addon.setThreads(threads);
k.setDefaultBackend('cpu');

/** The speech clip (16 kHz), or seeded noise when ../shared is absent. */
function speech(): { clip: Float32Array; golden: k.Tensor | null } {
  try {
    const clip = k.loadAudio(join(FIXTURES, 'clips', 'speech_16k_s16.wav')).samples.toFloat32Array();
    const g = new SafetensorsFile(join(FIXTURES, 'models', 'whisper-tiny-random', 'goldens.safetensors'));
    return { clip, golden: g.tensor('input_features').reshape([80, 3000]) };
  } catch {
    let s = 1;
    return { clip: Float32Array.from({ length: 44555 }, () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31 - 0.5) * 0.2), golden: null };
  }
}

const maxRelToPeak = (got: Float32Array, want: Float32Array): number => {
  let peak = 0;
  let err = 0;
  for (let i = 0; i < want.length; i++) {
    peak = Math.max(peak, Math.abs(want[i]));
    err = Math.max(err, Math.abs(got[i] - want[i]));
  }
  return err / peak;
};

const { clip, golden } = speech();
// each window: the clip from a different offset, tiled to 30 s (every window full of speech)
const audio = new Float32Array(windows * WINDOW);
for (let w = 0; w < windows; w++) for (let i = 0; i < WINDOW; i++) audio[w * WINDOW + i] = clip[(i + w * 997) % clip.length];
const batch = k.tensor(audio, { shape: [windows, WINDOW] });

// validate before timing: window 0 of a lone clip = transformers' features
if (golden) {
  const lone = k.audio.whisperLogMel(k.tensor(clip), { nMels: 80 });
  const err = maxRelToPeak(lone.toFloat32Array(), golden.toFloat32Array());
  if (!(err <= 1e-4)) throw new Error(`whisperLogMel differs from the transformers golden by ${err} of peak`);
  console.log(`validated against transformers' input_features: max error ${err.toExponential(2)} of peak`);
  lone.dispose();
}

const time = (f: () => void): number[] => {
  f(); // warm-up: FFT plan, allocator, pool
  return Array.from({ length: runs }, () => {
    const t0 = performance.now();
    f();
    return (performance.now() - t0) / 1000;
  });
};
// the last run's features stay for the comparison with the peer
const held: { features: k.Tensor | null } = { features: null };
const kestrelTimes = time(() => {
  held.features?.dispose();
  held.features = k.audio.whisperLogMel(batch, { nMels: 80 });
});
const stftTimes = time(() => k.audio.spectrogram(batch, { nFft: 400, hopLength: 160 }).dispose());
const seconds = (windows * WINDOW) / 16000;
const kestrel = { median_s: median(kestrelTimes), times_s: kestrelTimes, rtf: seconds / median(kestrelTimes), stft_power_median_s: median(stftTimes) };

let peer: Record<string, unknown> = { note: 'not run (--no-peer)' };
if (!args['no-peer']) {
  const dir = mkdtempSync(join(tmpdir(), 'kestrel-bench-audio-'));
  writeFileSync(join(dir, 'audio.f32'), audio);
  const req = { audio: join(dir, 'audio.f32'), windows, runs, threads, out: join(dir, 'peer0.f32') };
  const r = runPeer(join(BENCH_DIR, 'peers', 'torch_logmel.py'), [JSON.stringify(req)], 1_800_000, undefined, { OMP_WAIT_POLICY: 'PASSIVE' });
  if (r.out === null) peer = { note: `torch peer failed: ${r.why}` };
  else {
    const p = JSON.parse(r.out.trim().split('\n').pop()!) as { median_s: number };
    const peerFeat = new Float32Array(readFileSync(req.out).buffer.slice(0));
    const ourFeat = held.features!.select(0, 0).toFloat32Array();
    const agreement = maxRelToPeak(ourFeat, peerFeat);
    if (!(agreement <= 1e-4)) throw new Error(`Kestrel and torchaudio features differ by ${agreement} of peak`);
    peer = { ...p, rtf: seconds / p.median_s, max_error_vs_kestrel_of_peak: agreement };
  }
}

const ratio = typeof peer.median_s === 'number' ? (peer.median_s as number) / kestrel.median_s : null;
console.log(`Whisper log-mel (80 bins), ${windows} x 30 s windows = ${(seconds / 60).toFixed(1)} min of 16 kHz audio, ${threads} threads`);
console.log(`| impl | median s | real-time factor |\n|---|---|---|`);
console.log(`| Kestrel whisperLogMel | ${kestrel.median_s.toFixed(3)} | ${kestrel.rtf.toFixed(0)}x |`);
if (ratio !== null) console.log(`| torchaudio ${peer.torchaudio} MelSpectrogram + Whisper log | ${(peer.median_s as number).toFixed(3)} | ${(peer.rtf as number).toFixed(0)}x |`);
console.log(ratio !== null ? `Kestrel / torchaudio speed: ${ratio.toFixed(2)}x (target >= 1x)` : String(peer.note));
console.log(`(STFT power alone: ${kestrel.stft_power_median_s.toFixed(3)} s)`);
const path = writeResult('audio_logmel', {
  bench: 'audio_logmel', cpuInfo: addon.info(), threads, loadavg_1_5_15: loadavg(), config: { windows, window_samples: WINDOW, audio_seconds: seconds, nMels: 80, runs },
  kestrel, peer, speed_ratio_vs_torchaudio: ratio,
});
console.log(`wrote ${path}`);
