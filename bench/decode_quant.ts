// Decode-time quantized matmul and batch-1 decode (issue 10, part 3): the decode GEMV
// (native/quant_gemv.cc) on bf16 / int8 / q4 weights against the memory-bandwidth bound measured
// in the same run (a streaming read of a float32 buffer of the same bytes, or of 4x the last-level
// caches where that is more, STREAM's rule, so that it reads memory and not cache; sampled after
// every timed run so that both see the same machine load), and greedy batch-1
// decode tok/s of random models with the smol135m and qwen05b shapes at float32 (Kestrel's plain
// decode) and at each quantized format (every Linear and the head quantized), each against its
// own bound: bandwidth / bytes of weight read per token.
// Decode tok/s counts every token after the first (the prefill's): 128 of them by default, as
// llama-bench's tg128, so the first steps (op by op while the CPU graph is recorded) weigh as they do
// in a real generation, not as a third of a short one.
// The llama.cpp peer (node-llama-cpp on the same shapes exported to GGUF f16 / q8_0 / q4_0, side by
// side in one run) is bench/llama_cpp.ts.
// `--profile int8,q4` adds where a decode step's time goes (k.profile per kernel, the head alone, the
// rest outside kernels). int8/q4 GEMVs take int8 activations where the CPU has the integer path
// (quant_gemv_int8.cc): KESTREL_QUANT_GEMV=float before the command times float activations instead.
// Run: node --import tsx bench/decode_quant.ts [--configs smol135m,qwen05b] [--decode 128] [--reps 5] [--profile int8,q4] [--profile-steps 16]
//   [--no-kernels] [--no-models] (the profile alone; KESTREL_DECODE_FUSION=off profiles the decode step without the fused ops)
//   [--fusion-ab] (each model's decode also with the separate ops, alternating run by run: the fused ops' speed-up)
//   [--kv-ab N] (each model's decode after an N-token prompt with a float32 and a bf16 KV cache, alternating run
//   by run: what the bf16 cache saves at long contexts, where the attention reads more than the weights)
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import * as k from '../src/index.js';
import { BandwidthProbe, buildDecoder, bytesPerToken, lastLevelCacheBytes, linearBytes, memoryProbeBytes, readBandwidth } from './lib/decoder_bench.js';
import { loadNative } from '../src/backend/addon.js';
import { median, writeResult } from './lib/report.js';

const SHAPES: Record<string, { dim: number; layers: number; heads: number; kv: number; ffn: number; vocab: number }> = {
  smol135m: { dim: 576, layers: 30, heads: 9, kv: 3, ffn: 1536, vocab: 49152 },
  qwen05b: { dim: 896, layers: 24, heads: 14, kv: 2, ffn: 4864, vocab: 151936 },
};
const FORMATS = k.quant.INFERENCE_QUANTS;
/** The activations of the int8/q4 GEMV (quant_gemv_int8.cc; KESTREL_QUANT_GEMV=float keeps them float). */
const GEMV_PATH = loadNative()?.info().quantGemv ?? 'float';
const PROMPT = 16;


/**
 * The GEMV alone, M = 1, on two weights of about 64 MB each with a model's inner dims: [N, dim]
 * (the q/k/v/gate/up projections stacked over layers) and [N, ffn] (down projections). One call
 * streams the whole weight, so the op layer's per-call cost does not count against the kernel.
 * Each rep also takes a stream sample of the same bytes: the bound is their median.
 */
function kernelRun(name: string, format: (typeof FORMATS)[number], reps: number) {
  const s = SHAPES[name];
  k.manualSeed(1);
  const bytesPerValue = format === 'bf16' ? 2 : format === 'int8' ? 1 : 0.5;
  const layers = [s.dim, s.ffn].map((K) => k.tidy(() => k.quant.QuantLinear.fromWeight(k.randn([Math.round(64e6 / bytesPerValue / K / 64) * 64, K]).mul(0.02), null, { type: format })));
  const bytes = layers.reduce((n, q) => n + linearBytes(q), 0);
  const xs = layers.map((q) => k.randn([1, q.inFeatures]));
  layers.forEach((q) => validate(q.inFeatures, format));
  // int8/q4: the float-activation path timed too, alternating with the chosen one rep by rep (the
  // switch is read per call), so both see the same machine load
  const paths = format !== 'bf16' && GEMV_PATH !== 'float' ? [GEMV_PATH, 'float'] : [GEMV_PATH];
  const times: Record<string, number[]> = Object.fromEntries(paths.map((p) => [p, []]));
  const probe = new BandwidthProbe(memoryProbeBytes(bytes));
  const streams: number[] = [];
  const chosen = process.env.KESTREL_QUANT_GEMV;
  for (let r = 0; r < reps + 1; r++) {
    for (const p of paths) {
      process.env.KESTREL_QUANT_GEMV = p;
      const t0 = performance.now();
      layers.forEach((q, i) => q.forward(xs[i]).dispose());
      if (r) times[p].push(performance.now() - t0);
    }
    if (r) streams.push(probe.sample());
  }
  probe.dispose();
  if (chosen === undefined) delete process.env.KESTREL_QUANT_GEMV;
  else process.env.KESTREL_QUANT_GEMV = chosen;
  const gbs = bytes / (median(times[GEMV_PATH]) / 1e3) / 1e9;
  const floatGBs = paths.length > 1 ? bytes / (median(times.float) / 1e3) / 1e9 : null;
  const bound = median(streams);
  for (const t of [...layers, ...xs]) t.dispose();
  return { config: name, format, path: GEMV_PATH, weightMB: bytes / 1e6, gemvGBs: gbs, floatActivationsGBs: floatGBs, streamGBs: bound, fractionOfBound: gbs / bound };
}

/**
 * Validated before timed, on 256 rows of the same K and format (rows are independent; the timed
 * weights are too big to dequantize): the GEMV equals x times the dequantized weight, within
 * float32 rounding, plus with int8 activations (int8/q4 where the CPU has the integer path) the
 * bound int8ActivationErrorBound states.
 */
function validate(K: number, format: (typeof FORMATS)[number]): void {
  k.tidy(() => {
    const q = k.quant.QuantLinear.fromWeight(k.randn([256, K]).mul(0.02), null, { type: format });
    const x = k.randn([1, K]);
    const w = q.dequantize();
    const want = k.matmul(x, w.t()).toFloat32Array();
    const got = q.forward(x).toFloat32Array();
    const int8x = format !== 'bf16' && GEMV_PATH !== 'float';
    const bound = int8x ? k.quant.int8ActivationErrorBound(x.toFloat32Array(), w.toFloat32Array(), [1, 256, K]) : null;
    const scale = Math.max(...want.map(Math.abs));
    got.forEach((g, n) => {
      if (!(Math.abs(g - want[n]) <= (bound?.[n] ?? 0) + 1e-4 * scale)) throw new Error(`GEMV ${format} K=${K}: output ${n} is ${g}, the dequantized product ${want[n]} (bound ${bound?.[n] ?? 0})`);
    });
    q.dispose();
  });
}

const build = (name: string): k.CausalLM => buildDecoder(name, SHAPES[name]);

/**
 * Where a batch-1 decode step's time goes: k.profile over `steps` decode steps after a PROMPT-token
 * prefill (kernel time per step by kernel), the head's GEMV timed alone, and the rest of the wall
 * time (TypeScript, dispatch, allocation, sampling) as `other`.
 */
async function profileRun(name: string, format: (typeof FORMATS)[number], steps: number) {
  const model = build(name);
  k.quantizeForInference(model, format);
  const ids = k.randint(0, model.config.vocabSize, [1, PROMPT], { generator: new k.Generator(1) });
  // warm-up run (it records the CPU graph), then the profiled one: profiling starts after its first
  // decode step (which checks the kept graph against the step), so it times replays call by call
  for await (const _ of model.stream(ids, { maxNewTokens: 8, temperature: 0, eosTokenId: [] }));
  for await (const { step } of model.stream(ids, { maxNewTokens: steps + 2, temperature: 0, eosTokenId: [] })) if (step === 1) k.profile.start();
  const prof = k.profile.stop();
  ids.dispose();
  const head = model.lm_head as unknown as k.quant.QuantLinear;
  const h = k.randn([1, 1, model.config.hiddenSize]);
  const headTimes: number[] = [];
  for (let r = 0; r < 6; r++) {
    const t0 = performance.now();
    head.forward(h).dispose();
    if (r) headTimes.push(performance.now() - t0);
  }
  h.dispose();
  model.dispose();
  const msPerStep = prof.wallMs / steps;
  const kernels = prof.kernels.map((r) => ({ kernel: r.name, callsPerStep: r.calls / steps, msPerStep: r.ms / steps, share: r.ms / prof.wallMs }));
  const kernelMs = kernels.reduce((a, r) => a + r.msPerStep, 0);
  const headMs = median(headTimes);
  const callsPerStep = kernels.reduce((a, r) => a + r.callsPerStep, 0);
  const rows = { config: name, format, decodeFusion: process.env.KESTREL_DECODE_FUSION !== 'off', kernelCallsPerStep: callsPerStep, msPerStep, headGemvMsPerStep: headMs, headShare: headMs / msPerStep, otherMsPerStep: msPerStep - kernelMs, otherShare: 1 - kernelMs / msPerStep, kernels };
  console.log(`profile ${name} ${format}: ${callsPerStep.toFixed(0)} kernel calls/token, ${msPerStep.toFixed(2)} ms/token; head GEMV ${headMs.toFixed(2)} ms (${(100 * rows.headShare).toFixed(0)}%), outside kernels ${rows.otherMsPerStep.toFixed(2)} ms (${(100 * rows.otherShare).toFixed(0)}%)`);
  for (const r of kernels.slice(0, 8)) console.log(`  ${r.kernel.padEnd(28)} ${r.callsPerStep.toFixed(0).padStart(5)} calls ${r.msPerStep.toFixed(3).padStart(8)} ms ${(100 * r.share).toFixed(1).padStart(5)}%`);
  return rows;
}

/** One greedy batch-1 decode of `decode` tokens after a `prompt`-token prefill (prompt seed r): tok/s. */
async function decodeOnce(model: k.CausalLM, decode: number, r: number, prompt = PROMPT, kvCacheDtype?: k.KvCacheDtype): Promise<number> {
  const ids = k.randint(0, model.config.vocabSize, [1, prompt], { generator: new k.Generator(r) });
  let tFirst = 0;
  for await (const { step } of model.stream(ids, { maxNewTokens: decode + 1, temperature: 0, eosTokenId: [], kvCacheDtype })) if (step === 0) tFirst = performance.now();
  const t1 = performance.now();
  ids.dispose();
  return decode / ((t1 - tFirst) / 1e3);
}

/**
 * Median decode tok/s (batch 1, greedy, after a PROMPT-token prefill) over reps runs after a
 * warm-up, and the median of the stream samples taken after each run (the bound under the same load).
 */
async function decodeRate(model: k.CausalLM, decode: number, reps: number, probe: BandwidthProbe): Promise<{ rate: number; bw: number }> {
  const rates: number[] = [], bws: number[] = [];
  for (let r = 0; r < reps + 1; r++) {
    const rate = await decodeOnce(model, decode, r);
    if (r) rates.push(rate), bws.push(probe.sample());
  }
  return { rate: median(rates), bw: median(bws) };
}

/**
 * Median decode tok/s with the fused decode ops and with the separate ops (KESTREL_DECODE_FUSION=off),
 * alternating run by run on the same model so that both see the same machine load; stream samples between.
 */
async function fusionRates(model: k.CausalLM, decode: number, reps: number, probe: BandwidthProbe): Promise<{ fused: number; separate: number; bw: number }> {
  const runs = { fused: [] as number[], separate: [] as number[] };
  const bws: number[] = [];
  const chosen = process.env.KESTREL_DECODE_FUSION;
  for (let r = 0; r < reps + 1; r++) {
    for (const mode of ['separate', 'fused'] as const) {
      process.env.KESTREL_DECODE_FUSION = mode === 'fused' ? 'on' : 'off';
      const rate = await decodeOnce(model, decode, r);
      if (r) runs[mode].push(rate);
    }
    if (r) bws.push(probe.sample());
  }
  if (chosen === undefined) delete process.env.KESTREL_DECODE_FUSION;
  else process.env.KESTREL_DECODE_FUSION = chosen;
  return { fused: median(runs.fused), separate: median(runs.separate), bw: median(bws) };
}

/** Median decode tok/s after a `prompt`-token prefill with a float32 and a bf16 KV cache, alternating run by run. */
async function kvRates(model: k.CausalLM, decode: number, reps: number, prompt: number): Promise<{ float32: number; bfloat16: number }> {
  const runs = { float32: [] as number[], bfloat16: [] as number[] };
  for (let r = 0; r < reps + 1; r++)
    for (const dtype of ['float32', 'bfloat16'] as const) {
      const rate = await decodeOnce(model, decode, r, prompt, dtype);
      if (r) runs[dtype].push(rate);
    }
  return { float32: median(runs.float32), bfloat16: median(runs.bfloat16) };
}

async function modelRun(name: string, decode: number, reps: number, fusionAb: boolean, kvAb: number) {
  const rows: Record<string, unknown>[] = [];
  for (const format of ['float32', ...FORMATS] as const) {
    const model = build(name);
    if (format !== 'float32') k.quantizeForInference(model, format);
    const bytes = bytesPerToken(model);
    const sameBytes = Math.min(bytes, 512e6), probeBytes = memoryProbeBytes(sameBytes);
    const probe = new BandwidthProbe(probeBytes);
    const ab = fusionAb ? await fusionRates(model, decode, reps, probe) : null;
    const kv = kvAb ? await kvRates(model, decode, reps, kvAb) : null;
    if (kv) console.log(`${name} ${format.padEnd(7)} after ${kvAb} tokens: bf16 KV cache ${kv.bfloat16.toFixed(1)} tok/s vs float32 ${kv.float32.toFixed(1)} = ${(kv.bfloat16 / kv.float32).toFixed(2)}x`);
    const { rate, bw } = ab ? { rate: ab.fused, bw: ab.bw } : await decodeRate(model, decode, reps, probe);
    if (ab) console.log(`${name} ${format.padEnd(7)} fused decode ops ${ab.fused.toFixed(1)} tok/s vs separate ops ${ab.separate.toFixed(1)} tok/s = ${(ab.fused / ab.separate).toFixed(2)}x`);
    probe.dispose();
    model.dispose();
    // a probe of the weight's own bytes too, for the record (the same probe where the weight is
    // already 4x the last-level caches): near the caches' size, part of it is read from cache and
    // that "bound" is above memory's
    const sameBytesGBs = probeBytes === sameBytes ? bw : readBandwidth(sameBytes);
    const sameBytesFraction = (rate * bytes) / (sameBytesGBs * 1e9);
    const bound = (bw * 1e9) / bytes;
    rows.push({
      config: name, format, weightMBPerToken: bytes / 1e6, decodeTokPerSec: rate, ...(ab ? { separateOpsTokPerSec: ab.separate, fusionSpeedup: ab.fused / ab.separate } : {}),
      ...(kv ? { kvPromptTokens: kvAb, kvFloat32TokPerSec: kv.float32, kvBf16TokPerSec: kv.bfloat16, kvBf16Speedup: kv.bfloat16 / kv.float32 } : {}),
      streamGBs: bw, boundTokPerSec: bound, fractionOfBound: rate / bound,
      sameBytesStreamGBs: sameBytesGBs, fractionOfSameBytesBound: sameBytesFraction,
    });
    console.log(`${name} ${format.padEnd(7)} decode ${rate.toFixed(1).padStart(6)} tok/s, ${(bytes / 1e6).toFixed(0)} MB/token, ${((100 * rate) / bound).toFixed(0)}% of the ${bound.toFixed(1)} tok/s bound (${bw.toFixed(1)} GB/s; a probe of the same ${(bytes / 1e6).toFixed(0)} MB: ${sameBytesGBs.toFixed(1)} GB/s, ${(100 * sameBytesFraction).toFixed(0)}%)`);
  }
  const f32 = rows[0].decodeTokPerSec as number;
  for (const r of rows) r.vsFloat32 = (r.decodeTokPerSec as number) / f32;
  return rows;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: {
    configs: { type: 'string', default: 'smol135m,qwen05b' }, decode: { type: 'string', default: '128' }, reps: { type: 'string', default: '5' },
    'no-models': { type: 'boolean', default: false }, 'no-kernels': { type: 'boolean', default: false }, 'fusion-ab': { type: 'boolean', default: false }, 'kv-ab': { type: 'string', default: '0' }, profile: { type: 'string', default: 'int8,q4' }, 'profile-steps': { type: 'string', default: '16' },
  } });
  const names = values.configs!.split(',');
  for (const n of names) if (!SHAPES[n]) throw new Error(`--configs: unknown shape '${n}' (${Object.keys(SHAPES).join(', ')})`);
  const reps = Number(values.reps);
  const info = loadNative()?.info();
  const kernels = [];
  for (const name of values['no-kernels'] ? [] : names)
    for (const format of FORMATS) {
      const r = kernelRun(name, format, reps);
      kernels.push(r);
      const vsFloat = r.floatActivationsGBs ? ` (float activations: ${r.floatActivationsGBs.toFixed(1)} GB/s, ${(r.gemvGBs / r.floatActivationsGBs).toFixed(2)}x)` : '';
      console.log(`GEMV ${name} ${format.padEnd(5)} ${r.weightMB.toFixed(0)} MB, ${r.path}: ${r.gemvGBs.toFixed(1)} GB/s vs stream ${r.streamGBs.toFixed(1)} GB/s = ${(100 * r.fractionOfBound).toFixed(0)}%${vsFloat}`);
    }
  const models: Record<string, unknown>[] = [];
  if (!values['no-models']) for (const name of names) models.push(...(await modelRun(name, Number(values.decode), reps, values['fusion-ab']!, Number(values['kv-ab']))));
  const profiles: Record<string, unknown>[] = [];
  const profileFormats = values.profile ? values.profile.split(',').map((f) => k.quant.checkInferenceQuant(f, '--profile')) : [];
  for (const name of names) for (const f of profileFormats) profiles.push(await profileRun(name, f, Number(values['profile-steps'])));
  const path = writeResult('decode_quant', {
    threads: info?.threads, simd: info ? { avx512f: info.avx512f, avx2: info.avx2, avx512vnni: info.avx512vnni, avxVnni: info.avxVnni } : null,
    quantGemv: GEMV_PATH, loadAverage1m: loadavg()[0], decodeTokens: Number(values.decode), promptTokens: PROMPT, lastLevelCacheBytes: lastLevelCacheBytes(),
    kernels, models, profiles, peers: 'llama.cpp: bench/llama_cpp.ts (results/llama_cpp.json)',
  });
  console.log(`wrote ${path}`);
}

await main();
