// Memory reuse and first-call benchmark (issue 11, items 5 and 6), each measurement in a fresh
// child process, configurations interleaved round by round (the machine is shared):
//  - training: a DESIGN.md-shaped Llama (tiny, small) trained N steps with the caching allocator
//    on and off (KESTREL_ALLOC_CACHE=0: glibc's aligned_alloc, as before): ms/step, minor page
//    faults/step and OS allocations/step in the steady state (steps >= 3), the faults' share of a
//    step (faults x the per-fault cost probed in the same process), and the loss trajectories,
//    which must be bit-identical (validated before anything is reported).
//  - first calls: a fresh process's first 20 1024^3 float32 matmuls, each into a new output as an
//    op allocates one, with the addon as it is ('on'), with the cache and the pool warm-up off
//    ('off'), with an older build given by --base (e.g. the commit before this change), and
//    PyTorch's first calls as the peer. Each product is checked against float64 after timing.
// Writes bench/results/alloc.json. Run: node --import tsx bench/alloc.ts [--base path/to/kestrel.node]
//   [--rounds 3] [--shapes tiny,small] [--no-peer]
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { median, runPeer, writeResult, BENCH_DIR } from './lib/report.js';
import { packageRoot, type NativeAddon } from '../src/backend/addon.js';
import { Packer, type NativeView } from '../src/backend/cpu/native.js';

const SELF = fileURLToPath(import.meta.url);
const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};

// ---------------------------------------------------------------- children

/** Microseconds per first-touch page fault here: a fresh 64 MiB block (glibc maps it) written twice. */
function faultCostUs(addon: NativeAddon): number {
  const bytes = 64 << 20;
  const src = new Uint8Array(bytes).fill(1);
  const h = addon.alloc(bytes, false);
  const f0 = process.resourceUsage().minorPageFault;
  let t = performance.now();
  addon.write(h, 0, src);
  const first = performance.now() - t;
  const faults = process.resourceUsage().minorPageFault - f0;
  t = performance.now();
  addon.write(h, 0, src);
  const second = performance.now() - t;
  addon.free(h);
  return faults > 0 ? ((first - second) * 1e3) / faults : 0;
}

const SHAPES: Record<string, { d: number; layers: number; heads: number; kv: number; ffn: number; vocab: number; seq: number; batch: number }> = {
  tiny: { d: 128, layers: 4, heads: 4, kv: 4, ffn: 352, vocab: 512, seq: 256, batch: 8 },
  small: { d: 512, layers: 8, heads: 8, kv: 2, ffn: 1376, vocab: 8000, seq: 256, batch: 4 },
};

async function trainChild(shapeName: string, steps: number): Promise<void> {
  const k = await import('../src/index.js');
  const { decoderConfig } = await import('../src/models/registry.js');
  const { loadNative } = await import('../src/backend/addon.js');
  const s = SHAPES[shapeName];
  k.setDefaultBackend('cpu');
  const addon = loadNative()!;
  // probed with the cache off (a fresh mapping each time), then the process's own setting back
  const settings = addon.allocStats();
  addon.allocConfigure(settings.limit, false, false);
  const usPerFault = faultCostUs(addon);
  addon.allocConfigure(settings.limit, settings.enabled, false);
  const config = decoderConfig({
    model_type: 'llama', vocab_size: s.vocab, hidden_size: s.d, intermediate_size: s.ffn, num_hidden_layers: s.layers,
    num_attention_heads: s.heads, num_key_value_heads: s.kv, max_position_embeddings: s.seq,
  }, `bench ${shapeName}`);
  k.manualSeed(1);
  const model = new k.CausalLM(config).train();
  const opt = new k.optim.AdamW(model.parameters(), { lr: 1e-4 });
  const ids = Array.from({ length: s.batch }, (_, b) => Array.from({ length: s.seq }, (_, t) => (b * 131 + t * 17) % s.vocab));
  const batch = { inputIds: ids, labels: ids, attentionMask: ids.map((r) => r.map(() => 1)) };
  const rows: { ms: number; cpuMs: number; sysMs: number; faults: number; osAllocs: number; loss: number }[] = [];
  for (let i = 0; i < steps; i++) {
    const m0 = k.memory.stats('cpu');
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const { loss } = k.train.accumulateGradients(model, [batch]);
    opt.step();
    opt.zeroGrad();
    const ms = performance.now() - t0;
    const c1 = process.cpuUsage(c0);
    const m1 = k.memory.stats('cpu');
    rows.push({ ms, cpuMs: (c1.user + c1.system) / 1e3, sysMs: c1.system / 1e3, faults: m1.pageFaults.minor - m0.pageFaults.minor, osAllocs: m1.osAllocs - m0.osAllocs, loss });
  }
  const end = k.memory.stats('cpu');
  console.log(JSON.stringify({ usPerFault, rows, cached: end.cached, reserved: end.reserved, peak: end.peak.total }));
}

function firstCallsChild(addonPath: string, n: number, calls: number): void {
  const t0 = performance.now();
  const addon = createRequire(import.meta.url)(addonPath) as NativeAddon;
  // what the cpu backend does when it is created (older builds have no warm-up)
  if (typeof addon.warmup === 'function') addon.warmup();
  const loadMs = performance.now() - t0;
  const p = new Packer(addon);
  let seed = 1;
  const rnd = (): number => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 31 - 1);
  const ha = Float32Array.from({ length: n * n }, rnd), hb = Float32Array.from({ length: n * n }, rnd);
  const a = addon.alloc(n * n * 4, false), b = addon.alloc(n * n * 4, false);
  addon.write(a, 0, ha);
  addon.write(b, 0, hb);
  const view = (handle: number): NativeView => ({ handle, dtype: 'float32', offset: 0, shape: [n, n], strides: [n, 1] });
  const ms: number[] = [], cpuMs: number[] = [], faults: number[] = [];
  const out = new Float32Array(4 * n);
  for (let i = 0; i < calls; i++) {
    const f0 = process.resourceUsage().minorPageFault;
    const c0 = process.cpuUsage();
    const t = performance.now();
    const c = addon.alloc(n * n * 4, false); // a new output each call, as an op allocates one
    p.view(view(a)).view(view(b)).view(view(c)).num(0).call('matmul');
    ms.push(performance.now() - t);
    const c1 = process.cpuUsage(c0);
    cpuMs.push((c1.user + c1.system) / 1e3);
    faults.push(process.resourceUsage().minorPageFault - f0);
    if (i === calls - 1) addon.read(c, 0, out);
    addon.free(c);
  }
  // checked after timing (the calls measured must be the process's first): 4 rows vs float64
  for (let i = 0; i < 4; i++)
    for (let j = 0; j < n; j++) {
      let ref = 0;
      for (let q = 0; q < n; q++) ref += ha[i * n + q] * hb[q * n + j];
      if (Math.abs(out[i * n + j] - ref) > 1e-3 + 1e-4 * Math.abs(ref)) throw new Error(`matmul wrong at (${i}, ${j}): ${out[i * n + j]} vs ${ref}`);
    }
  console.log(JSON.stringify({ loadMs, ms, cpuMs, faults }));
}

// ---------------------------------------------------------------- parent

function child(args: string[], env: Record<string, string>): unknown {
  const r = spawnSync(process.execPath, ['--import', 'tsx', SELF, ...args], {
    env: { ...process.env, ...env }, encoding: 'utf8', maxBuffer: 64 << 20, timeout: 1_800_000,
  });
  if (r.status !== 0) throw new Error(`child ${args.join(' ')} failed: ${r.stderr.trim().split('\n').slice(-5).join(' | ')}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

interface TrainRun { usPerFault: number; rows: { ms: number; cpuMs: number; sysMs: number; faults: number; osAllocs: number; loss: number }[]; cached: number; reserved: number; peak: number }

function benchTraining(shapes: string[], rounds: number): object[] {
  const configs: Record<string, Record<string, string>> = { on: {}, off: { KESTREL_ALLOC_CACHE: '0' } };
  const out: object[] = [];
  for (const shape of shapes) {
    const steps = shape === 'tiny' ? 12 : 6;
    const runs: Record<string, TrainRun[]> = { on: [], off: [] };
    for (let r = 0; r < rounds; r++)
      for (const [name, env] of Object.entries(configs)) runs[name].push(child(['--child', 'train', shape, String(steps)], env) as TrainRun);
    // validate: the cache changes where blocks live, never a result
    const ref = runs.on[0].rows.map((x) => x.loss);
    for (const run of [...runs.on, ...runs.off])
      if (run.rows.some((x, i) => x.loss !== ref[i])) throw new Error(`${shape}: loss trajectories differ between runs`);
    const summary = (name: string): Record<string, number> => {
      const steady = runs[name].flatMap((run) => run.rows.slice(2));
      const msStep = median(steady.map((x) => x.ms));
      const faultsStep = median(steady.map((x) => x.faults));
      const usPerFault = median(runs[name].map((x) => x.usPerFault));
      return {
        msPerStep: msStep,
        // CPU time of all threads (user + system, page faults included): less swayed by other jobs than wall time
        cpuMsPerStep: median(steady.map((x) => x.cpuMs)),
        // kernel time: page faults, mmap / munmap (and their TLB shootdowns), as a share of the step's CPU time
        sysMsPerStep: median(steady.map((x) => x.sysMs)),
        sysShareOfCpu: median(steady.map((x) => x.sysMs / x.cpuMs)),
        firstStepMs: median(runs[name].map((x) => x.rows[0].ms)),
        minorFaultsPerStep: faultsStep,
        osAllocsPerStep: median(steady.map((x) => x.osAllocs)),
        usPerFault,
        faultShareOfStep: (faultsStep * usPerFault) / 1e3 / msStep,
        cachedBytesAtEnd: median(runs[name].map((x) => x.cached)),
        reservedBytesAtEnd: median(runs[name].map((x) => x.reserved)),
        peakTensorBytes: median(runs[name].map((x) => x.peak)),
      };
    };
    const on = summary('on'), off = summary('off');
    const row = { shape, steps, rounds, on, off, speedup: off.msPerStep / on.msPerStep, cpuSpeedup: off.cpuMsPerStep / on.cpuMsPerStep, losses: ref };
    console.log(`train ${shape}: ms/step on ${on.msPerStep.toFixed(1)} off ${off.msPerStep.toFixed(1)} (x${row.speedup.toFixed(2)}); ` +
      `cpu ms/step on ${on.cpuMsPerStep.toFixed(1)} off ${off.cpuMsPerStep.toFixed(1)} (x${row.cpuSpeedup.toFixed(2)}); ` +
      `faults/step on ${on.minorFaultsPerStep} off ${off.minorFaultsPerStep} (${(100 * off.faultShareOfStep).toFixed(1)}% of an off step at ` +
      `${off.usPerFault.toFixed(2)} us/fault); system time/CPU time on ${(100 * on.sysShareOfCpu).toFixed(1)}% off ${(100 * off.sysShareOfCpu).toFixed(1)}%; OS allocs/step on ${on.osAllocsPerStep} off ${off.osAllocsPerStep}`);
    out.push(row);
  }
  return out;
}

interface FirstRun { loadMs: number; ms: number[]; cpuMs?: number[]; faults: number[] }

function benchFirstCalls(rounds: number, base: string | null, peer: boolean): object {
  const n = 1024, calls = 20;
  const addon = join(packageRoot(), 'build', 'Release', 'kestrel.node');
  const configs: Record<string, { path: string; env: Record<string, string> }> = {
    on: { path: addon, env: {} },
    off: { path: addon, env: { KESTREL_ALLOC_CACHE: '0', KESTREL_WARMUP: '0' } },
  };
  if (base) configs.base = { path: base, env: {} };
  const runs: Record<string, FirstRun[]> = Object.fromEntries(Object.keys(configs).map((c) => [c, []]));
  const peerRuns: FirstRun[] = [];
  for (let r = 0; r < rounds; r++) {
    for (const [name, c] of Object.entries(configs))
      runs[name].push(child(['--child', 'first', c.path, String(n), String(calls)], { KESTREL_NUM_THREADS: '2', ...c.env }) as FirstRun);
    if (peer) {
      process.env.OMP_WAIT_POLICY = 'PASSIVE'; // DESIGN.md's best setting for this peer on 2 cores
      const res = runPeer(join(BENCH_DIR, 'peers', 'torch_first_calls.py'), [String(n), String(calls), '2']);
      if (res.out) peerRuns.push({ loadMs: 0, ...(JSON.parse(res.out) as { ms: number[]; faults: number[] }) });
      else console.log(`peer skipped: ${res.why}`);
    }
  }
  const summary = (rs: FirstRun[]): object => {
    const perCall = Array.from({ length: calls }, (_, i) => median(rs.map((x) => x.ms[i])));
    const steady = median(rs.flatMap((x) => x.ms.slice(10)));
    return {
      firstTenMs: perCall.slice(0, 10),
      // CPU time of both threads per call (the peer reports none): what contention cannot stretch as much
      firstTenCpuMs: rs[0].cpuMs ? Array.from({ length: 10 }, (_, i) => median(rs.map((x) => x.cpuMs![i]))) : null,
      steadyCpuMs: rs[0].cpuMs ? median(rs.flatMap((x) => x.cpuMs!.slice(10))) : null,
      firstTenFaults: Array.from({ length: 10 }, (_, i) => median(rs.map((x) => x.faults[i]))),
      steadyMs: steady,
      firstCallOverSteady: perCall[0] / steady,
      meanFirstEightOverSteady: perCall.slice(0, 8).reduce((s, x) => s + x, 0) / 8 / steady,
      loadAndWarmupMs: median(rs.map((x) => x.loadMs)),
    };
  };
  const result: Record<string, object> = Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, summary(v)]));
  if (peerRuns.length) result.torch = summary(peerRuns);
  for (const [name, s] of Object.entries(result) as [string, { firstTenMs: number[]; steadyMs: number; firstCallOverSteady: number; meanFirstEightOverSteady: number }][])
    console.log(`first calls ${name}: ${s.firstTenMs.map((x) => x.toFixed(1)).join(' ')} ms; steady ${s.steadyMs.toFixed(1)}; ` +
      `first/steady ${s.firstCallOverSteady.toFixed(2)}, mean(1-8)/steady ${s.meanFirstEightOverSteady.toFixed(2)}`);
  return { n, calls, threads: 2, rounds, base, ...result };
}

if (process.argv[2] === '--child') {
  const [kind, x, y, z] = process.argv.slice(3);
  if (kind === 'train') await trainChild(x, Number(y));
  else firstCallsChild(x, Number(y), Number(z));
} else {
  const rounds = Number(arg('rounds', '3'));
  const shapes = arg('shapes', 'tiny,small').split(',');
  const base = arg('base', '') || null;
  const load = [loadavg()[0]];
  const firstCalls = benchFirstCalls(rounds + 2, base, !process.argv.includes('--no-peer'));
  const training = benchTraining(shapes, rounds);
  load.push(loadavg()[0]);
  const path = writeResult('alloc', {
    threads: 2, loadAverage: { start: load[0], end: load[1] },
    note: 'median over interleaved fresh processes; steady state = steps >= 3; faultShareOfStep = faults/step x probed us/fault / ms/step',
    firstCalls, training,
  });
  console.log(`wrote ${path}`);
}
