// `kestrel doctor`: what this installation can do, measured rather than assumed.
import { loadNative, nativeLoadError } from '../backend/addon.js';
import { type CudaStatus, cudaStatus } from '../backend/cuda/context.js';
import * as k from '../index.js';
import { parseFlags } from './flags.js';
import { version } from './version.js';

/** Median GFLOP/s of an n×n×n matmul on the default backend. */
function matmulGflops(n: number, runs: number): number {
  const times: number[] = [];
  k.tidy(() => {
    const a = k.randn([n, n]);
    const b = k.randn([n, n]);
    k.matmul(a, b).dispose(); // warm-up
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      k.matmul(a, b).dispose();
      times.push(performance.now() - t0);
    }
  });
  times.sort((x, y) => x - y);
  return (2 * n ** 3) / (times[Math.floor(times.length / 2)] / 1e3) / 1e9;
}

export async function doctor(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, { json: { type: 'boolean', default: false } });
  const addon = loadNative();
  const info = addon?.info();
  const backend = k.defaultBackend().name;
  const n = backend === 'cpu' ? 1024 : 96;
  const cuda = cudaStatus();
  const report = {
    version: version(),
    node: process.version,
    backend,
    native: addon ? 'loaded' : `not available (${nativeLoadError()})`,
    cpu: info ? { avx2: info.avx2, fma: info.fma, avx512f: info.avx512f, f16c: info.f16c, avx512bf16: info.avx512bf16, amx_bf16: info.amxBf16, avx512vnni: info.avx512vnni, avx_vnni: info.avxVnni } : null,
    // the path a large bf16 / fp16 matmul takes (native/gemm_half.h; KESTREL_BF16_GEMM forces one)
    halfGemm: info ? { bfloat16: info.bf16Gemm, float16: info.fp16Gemm } : null,
    // the activations of the int8/q4 decode GEMV (native/quant_gemv_int8.cc; KESTREL_QUANT_GEMV forces one)
    quantGemv: info?.quantGemv ?? null,
    threads: info?.threads ?? 1,
    matmul: { n, gflops: Number(matmulGflops(n, backend === 'cpu' ? 5 : 1).toFixed(1)) },
    cuda: cudaReport(cuda),
    cudaMatmul: cuda.usable && !cuda.emulated ? gpuMatmulTflops() : null,
  };
  if (values.json) {
    process.stdout.write(JSON.stringify(report) + '\n');
    return 0;
  }
  const features = report.cpu ? Object.entries(report.cpu).filter(([, on]) => on).map(([f]) => f).join(' ') || 'none' : 'unknown';
  process.stdout.write(
    [
      `kestrel ${report.version} (node ${report.node})`,
      `backend      ${report.backend}${addon ? '' : `  [${report.native}]`}`,
      `cpu features ${features}`,
      `threads      ${report.threads}  (KESTREL_NUM_THREADS overrides)`,
      ...(report.halfGemm ? [`half matmul  bf16: ${report.halfGemm.bfloat16}, fp16: ${report.halfGemm.float16}  (KESTREL_BF16_GEMM=amx|avx512bf16|convert forces the bf16 path)`] : []),
      ...(report.quantGemv ? [`quant gemv   ${report.quantGemv}  (int8/q4 decode activations; KESTREL_QUANT_GEMV=float|avx512vnni|avxvnni|avx2|scalar forces one)`] : []),
      `matmul       ${report.matmul.gflops} GFLOP/s  (${n}x${n}x${n} float32, median)`,
      ...cudaLines(cuda),
      ...(report.cudaMatmul ? [`gpu matmul   ${report.cudaMatmul.bf16} TFLOP/s bf16, ${report.cudaMatmul.fp32} TFLOP/s fp32 (4096^3, cuBLASLt, TF32 off)`] : []),
    ].join('\n') + '\n',
  );
  return 0;
}

function cudaReport(s: CudaStatus) {
  return {
    usable: s.usable,
    emulated: s.emulated,
    reason: s.reason || null,
    device: s.device && { name: s.device.name, computeCapability: `${s.device.ccMajor}.${s.device.ccMinor}`, memoryGiB: Number((s.device.totalMemory / 2 ** 30).toFixed(1)), sms: s.device.smCount },
    libraries: s.libraries,
  };
}

/** The GPU, the driver, each CUDA library found (path, version) and, where one is missing, what to install. */
function cudaLines(s: CudaStatus): string[] {
  const lines: string[] = [];
  if (s.device) {
    const d = s.device;
    lines.push(`gpu          ${d.name}, compute capability ${d.ccMajor}.${d.ccMinor}, ${(d.totalMemory / 2 ** 30).toFixed(1)} GiB, ${d.smCount} SMs${s.emulated ? ' (KESTREL_CUDA_EMULATE=1)' : ''}`);
  } else {
    lines.push(`gpu          none usable${s.libraries && [s.libraries.driver, s.libraries.nvrtc, s.libraries.cublasLt].some((l) => !l.found) ? ' (what is missing is below)' : `: ${s.reason}`}`);
  }
  const libs = s.libraries;
  if (libs)
    for (const [label, l] of [['cuda driver', libs.driver], ['nvrtc', libs.nvrtc], ['cublasLt', libs.cublasLt]] as const)
      lines.push(`${label.padEnd(12)} ${l.found ? `${l.version}  ${l.path}` : `missing: ${l.error}`}`);
  return lines;
}

/** bf16 and fp32 4096^3 matmuls on the GPU (median of 5 after a warm-up), in TFLOP/s. */
function gpuMatmulTflops(): { bf16: number; fp32: number } {
  const n = 4096;
  const rate = (dtype: k.DType): number => k.tidy(() => {
    const a = k.randn([n, n], { backend: 'cuda' }).to(dtype);
    const b = k.randn([n, n], { backend: 'cuda' }).to(dtype);
    k.matmul(a, b).dispose();
    const times: number[] = [];
    for (let i = 0; i < 5; i++) {
      k.cuda.synchronize();
      const t0 = performance.now();
      k.matmul(a, b).dispose();
      k.cuda.synchronize();
      times.push(performance.now() - t0);
    }
    times.sort((x, y) => x - y);
    return Number(((2 * n ** 3) / (times[2] / 1e3) / 1e12).toFixed(1));
  });
  return { bf16: rate('bfloat16'), fp32: rate('float32') };
}
