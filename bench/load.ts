// Load-memory benchmark (issue 11, deliverable 4): how much memory loadPretrained holds at its peak
// compared with what the loaded model keeps resident, for a float32 checkpoint, a bfloat16 one
// (loaded as bfloat16 with dtype 'auto' and as float32) and a bitsandbytes NF4 one, on DESIGN.md's
// smol135m shape. Each case runs in a fresh process, so its peak RSS (VmHWM) is its own; the
// k.memory peak counts storage bytes, the RSS peak also counts JavaScript buffers and the heap.
// Run: node --import tsx bench/load.ts [--shape smol135m|small|tiny] [--label after] [--runs 3] [--clean]
//      (--clean deletes the cached fixtures afterwards; results merge into bench/results/load.json under the label, so a 'before' run stays)
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as k from '../src/index.js';
import { decoderConfig } from '../src/models/registry.js';
import { loadNative } from '../src/backend/addon.js';
import { BENCH_DIR, commitHash, median, writeResult } from './lib/report.js';

const SHAPES: Record<string, { dim: number; layers: number; heads: number; kv: number; ffn: number; vocab: number }> = {
  tiny: { dim: 128, layers: 4, heads: 4, kv: 4, ffn: 352, vocab: 512 },
  small: { dim: 512, layers: 8, heads: 8, kv: 2, ffn: 1376, vocab: 8000 },
  smol135m: { dim: 576, layers: 30, heads: 9, kv: 3, ffn: 1536, vocab: 49152 },
};

interface Case {
  name: string;
  /** the fixture folder (float32, bfloat16 or bnb-nf4) */
  folder: 'f32' | 'bf16' | 'nf4';
  dtype: 'float32' | 'auto';
}
const CASES: Case[] = [
  { name: 'float32', folder: 'f32', dtype: 'float32' },
  { name: 'bf16 as bf16 (auto)', folder: 'bf16', dtype: 'auto' },
  { name: 'bf16 as float32', folder: 'bf16', dtype: 'float32' },
  { name: 'bnb-nf4 (auto)', folder: 'nf4', dtype: 'auto' },
];

export interface LoadMeasure {
  /** bytes of storage held after the load (the model) */
  residentBytes: number;
  /** k.memory's peak during the load */
  peakBytes: number;
  /** VmRSS just before the load (the process with the addon loaded; VmHWM reset to it) and VmHWM after it */
  rssBeforeBytes: number;
  rssAfterBytes: number;
  hwmBytes: number;
  seconds: number;
}

/** A field of /proc/self/status in bytes (VmRSS, VmHWM). */
export function procStatus(field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${field}:\\s*(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'));
  if (!m) throw new Error(`/proc/self/status has no ${field}`);
  return Number(m[1]) * 1024;
}

/** One load in this (fresh) process. */
async function worker(dir: string, dtype: 'float32' | 'auto'): Promise<LoadMeasure> {
  k.zeros([1]).dispose(); // loads the addon before the baseline
  writeFileSync('/proc/self/clear_refs', '5'); // VmHWM := VmRSS, so loading the modules does not count
  const rssBeforeBytes = procStatus('VmRSS');
  k.memory.resetPeak();
  const t0 = performance.now();
  const { model } = await k.loadPretrained(dir, { dtype });
  const seconds = (performance.now() - t0) / 1000;
  const s = k.memory.stats();
  const out = { residentBytes: s.current.total, peakBytes: s.peak.total, rssBeforeBytes, rssAfterBytes: procStatus('VmRSS'), hwmBytes: procStatus('VmHWM'), seconds };
  model.dispose();
  return out;
}

function llamaConfig(shape: string, dtype: string): Record<string, unknown> {
  const s = SHAPES[shape];
  return {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: s.vocab, hidden_size: s.dim, intermediate_size: s.ffn,
    num_hidden_layers: s.layers, num_attention_heads: s.heads, num_key_value_heads: s.kv, rms_norm_eps: 1e-5, rope_theta: 10000,
    tie_word_embeddings: true, max_position_embeddings: 2048, initializer_range: 0.02, torch_dtype: dtype,
  };
}

/** Writes the three fixture folders of a random model once (cached in the temp dir by shape). */
function fixtures(shape: string): Record<Case['folder'], string> {
  const root = join(tmpdir(), `kestrel-bench-load-${shape}`);
  const dirs = { f32: join(root, 'f32'), bf16: join(root, 'bf16'), nf4: join(root, 'nf4') };
  if (Object.values(dirs).every((d) => existsSync(join(d, 'config.json')))) return dirs;
  mkdirSync(root, { recursive: true });
  const t0 = performance.now();
  const make = (): k.CausalLM => new k.CausalLM(decoderConfig(llamaConfig(shape, 'float32'), shape), { generator: new k.Generator(7) });
  let m = make();
  k.savePretrained(dirs.f32, { model: m, hfConfig: llamaConfig(shape, 'float32') });
  m.to('bfloat16');
  k.savePretrained(dirs.bf16, { model: m, hfConfig: llamaConfig(shape, 'bfloat16') });
  m.dispose();
  // NF4 as transformers saves a load_in_4bit model: quantized linears, the rest in its torch_dtype (bf16)
  m = make();
  k.quant.quantizeModel(m, { type: 'nf4' });
  m.to('bfloat16');
  k.savePretrained(dirs.nf4, { model: m, hfConfig: llamaConfig(shape, 'bfloat16') });
  m.dispose();
  console.log(`fixtures for ${shape} written to ${root} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return dirs;
}

const MB = (b: number): number => Math.round(b / 1e5) / 10;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      shape: { type: 'string', default: 'smol135m' }, label: { type: 'string', default: 'after' }, runs: { type: 'string', default: '3' },
      worker: { type: 'string' }, dtype: { type: 'string', default: 'float32' }, clean: { type: 'boolean', default: false },
    },
  });
  if (values.worker) {
    process.stdout.write(JSON.stringify(await worker(values.worker, values.dtype as Case['dtype'])) + '\n');
    return;
  }
  const shape = values.shape!;
  if (!SHAPES[shape]) throw new Error(`--shape must be one of ${Object.keys(SHAPES).join(', ')}`);
  const dirs = fixtures(shape);
  const self = fileURLToPath(import.meta.url);
  const rows: Record<string, unknown>[] = [];
  for (const c of CASES) {
    const runs: LoadMeasure[] = [];
    for (let i = 0; i < Number(values.runs); i++) {
      const r = spawnSync(process.execPath, ['--import', 'tsx', self, '--worker', dirs[c.folder], '--dtype', c.dtype], { encoding: 'utf8', maxBuffer: 1 << 20 });
      if (r.status !== 0) throw new Error(`${c.name}: worker failed: ${r.stderr}`);
      runs.push(JSON.parse(r.stdout.trim().split('\n').pop()!) as LoadMeasure);
    }
    const resident = runs[0].residentBytes;
    const peak = median(runs.map((r) => r.peakBytes));
    const rssPeak = median(runs.map((r) => r.hwmBytes - r.rssBeforeBytes));
    const rssAfter = median(runs.map((r) => r.rssAfterBytes - r.rssBeforeBytes));
    const seconds = median(runs.map((r) => r.seconds));
    const row = {
      case: c.name, residentMB: MB(resident), peakMB: MB(peak), peakRatio: +(peak / resident).toFixed(3),
      rssPeakDeltaMB: MB(rssPeak), rssPeakRatio: +(rssPeak / resident).toFixed(3), rssAfterDeltaMB: MB(rssAfter), seconds: +seconds.toFixed(2),
    };
    rows.push(row);
    console.log(`${c.name.padEnd(20)} resident ${row.residentMB} MB, k.memory peak ${row.peakMB} MB (${row.peakRatio}x), RSS peak - baseline ${row.rssPeakDeltaMB} MB (${row.rssPeakRatio}x), ${row.seconds} s`);
  }
  const path = join(BENCH_DIR, 'results', 'load.json');
  const previous = existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as { runs?: Record<string, unknown> }).runs ?? {} : {};
  const out = writeResult('load', {
    shape, config: SHAPES[shape], runsPerCase: Number(values.runs), cpuFeatures: loadNative()?.info() ?? null,
    note: 'peakRatio = k.memory peak / resident storage bytes; rssPeakRatio = (VmHWM - VmRSS before the load) / resident, each case in a fresh process',
    runs: { ...previous, [values.label!]: { commit: commitHash(), rows } },
  });
  console.log(`wrote ${out}`);
  if (values.clean) rmSync(join(tmpdir(), `kestrel-bench-load-${shape}`), { recursive: true, force: true });
}

await main();
