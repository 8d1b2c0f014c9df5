// Loads the C++ addon (build/Release/kestrel.node) once for the backends that use it: the CPU
// kernels (cpu/) and the CUDA runtime (cuda/). Its JavaScript surface is declared here.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** What the loader found of one CUDA library (native/cuda/api.h LibraryStatus). */
export interface CudaLibraryStatus {
  found: boolean;
  path: string;
  version: string;
  error: string;
}

export interface CudaDeviceInfo {
  name: string;
  ccMajor: number;
  ccMinor: number;
  smCount: number;
  totalMemory: number;
  l2Bytes: number;
  smemOptin: number;
  emulated: boolean;
}

export interface CudaMemStats {
  allocated: number;
  reserved: number;
  peakAllocated: number;
  peakReserved: number;
  blocks: number;
  driverAllocs: number;
  /** host<->device copies that went through the pinned staging buffers (native/cuda/staging.h) */
  stagedCopies: number;
  free: number;
  total: number;
}

/** The CPU caching allocator's counters (native/alloc.h AllocStats): bytes, blocks, counts. */
export interface CpuAllocStats {
  /** bytes of blocks held by live storages (size classes, so >= the storages' bytes) */
  inUse: number;
  /** bytes of freed blocks kept for reuse */
  cached: number;
  cachedBlocks: number;
  /** cached bytes beyond this go back to the OS */
  limit: number;
  /** blocks obtained from the OS (malloc / mmap) since the process began */
  osAllocs: number;
  /** blocks returned to it */
  osFrees: number;
  /** requests served from the cache */
  cacheHits: number;
  enabled: boolean;
  /** non-zeroed blocks are filled with 0xff bytes (NaN) */
  poison: boolean;
}

export interface NativeAddon {
  alloc(bytes: number, zero: boolean): number;
  free(handle: number): void;
  write(handle: number, byteOffset: number, src: ArrayBufferView): void;
  read(handle: number, byteOffset: number, dst: ArrayBufferView): void;
  /** pread(2) of `bytes` bytes at `position` of fd into the block at byteOffset (native/file_read.h) */
  readFile(handle: number, byteOffset: number, fd: number, position: number, bytes: number): void;
  call(kernelId: number, argCount: number): void;
  /**
   * CPU features the kernels dispatch on, and the path a large bfloat16 / float16 matmul takes
   * ('amx' | 'avx512bf16' | 'convert', or 'error: ...' when KESTREL_BF16_GEMM forces a missing one)
   */
  info(): {
    avx2: boolean; fma: boolean; avx512f: boolean; f16c: boolean; avx512bf16: boolean; amxBf16: boolean;
    avx512vnni: boolean; avxVnni: boolean;
    /** the decode GEMV's activations for int8/q4 weights: an int8 path (avx512vnni, avxvnni, avx2, scalar) or float */
    quantGemv: string;
    bf16Gemm: string; fp16Gemm: string; threads: number;
  };
  setThreads(n: number): void;
  liveBytes(): number;
  allocStats(): CpuAllocStats;
  /** returns every cached block to the OS; the bytes released */
  allocEmptyCache(): number;
  allocConfigure(limitBytes: number, enabled: boolean, poison: boolean): void;
  /** starts the thread pool and pre-faults each thread's packing buffers (KESTREL_WARMUP=0: no-op hooks) */
  warmup(): void;
  args: Float64Array;
  kernels: string[];
  /** replays recorded calls ([id, n, args...]...), adding patchDelta[i] * steps to argument patchAt[i] first (src/backend/cpu/graph.ts) */
  runProgram(calls: Float64Array, patchAt: Int32Array, patchDelta: Float64Array, steps: number, times?: Float64Array): void;
  // the order in which processes exit (native/exit_watch.h): ns is CLOCK_MONOTONIC, as process.hrtime.bigint()
  exitWatchStart(): number;
  exitWatchAdd(watch: number, pid: number): void;
  exitWatchExits(watch: number): { pids: number[]; ns: number }[];
  exitWatchStop(watch: number): void;

  // CUDA (native/binding_cuda.inc)
  cudaLoad(driver: string[], nvrtc: string[], cublasLt: string[]): { driver: CudaLibraryStatus; nvrtc: CudaLibraryStatus; cublasLt: CudaLibraryStatus };
  cudaInit(emulate: boolean, ordinal: number): CudaDeviceInfo;
  cudaAlloc(bytes: number, zero: boolean): number;
  cudaFree(ptr: number): void;
  cudaWrite(ptr: number, byteOffset: number, src: ArrayBufferView): void;
  cudaRead(ptr: number, byteOffset: number, dst: ArrayBufferView): void;
  cudaCopy(dst: number, dstOffset: number, src: number, srcOffset: number, bytes: number): void;
  cudaCompile(name: string, source: string, headerNames: string[], headerSources: string[], options: string[]): { ok: boolean; image: Uint8Array; log: string };
  cudaModule(name: string, image: Uint8Array): number;
  cudaFunction(module: number, name: string): { handle: number; paramSizes: number[] };
  cudaSetSmem(fn: number, bytes: number): void;
  cudaLaunch(fn: number, gx: number, gy: number, gz: number, bx: number, by: number, bz: number, smem: number, argBytes: number): void;
  cudaGemm(): void;
  cudaSync(): void;
  cudaMemStats(): CudaMemStats;
  cudaResetPeak(): void;
  cudaEmptyCache(): void;
  cudaCapture(what: 'begin' | 'end' | 'abort'): number;
  cudaGraph(id: number, launch: boolean): void;
  /** () records a marker -> id; (start, end) -> milliseconds between them; (id, -1) frees a marker */
  cudaEvent(start?: number, end?: number): number;
  cudaArgs: Uint8Array;

  // shared-memory transport (native/binding_dist.inc, native/dist_shm.h)
  /** maps (creating when absent) a group's segment; every member passes the same name, ranks and slot size -> id */
  distOpen(name: string, localRank: number, globalRanks: number[], slotBytes: number): number;
  /** one collective or send/recv on a worker thread; rejects naming the rank on a timeout or a dead peer */
  distRun(
    id: number, op: number, reduce: number, dtype: number, peer: number, count: number, groupSize: number,
    srcHandle: number, srcByteOffset: number, dstHandle: number, dstByteOffset: number, timeoutMs: number, name: string,
  ): Promise<void>;
  /** distRun on the JS thread, blocking until done (a collective inside a synchronous forward or backward) */
  distRunSync(
    id: number, op: number, reduce: number, dtype: number, peer: number, count: number, groupSize: number,
    srcHandle: number, srcByteOffset: number, dstHandle: number, dstByteOffset: number, timeoutMs: number, name: string,
  ): void;
  /** maps a region every member maps whole (all call it together, no call in flight) -> the storage handle of this member's part */
  distShare(id: number, bytes: number, timeoutMs: number): number;
  /** a storage handle over member `rank`'s copy of this member's shared storage `handle` */
  distPeer(id: number, handle: number, rank: number): number;
  /** a storage handle over every member's part of the region whose whole part `handle` is, end to end (parts of a multiple of 64 bytes) */
  distWhole(id: number, handle: number): number;
  /** collectives of group `id` that ran in place on shared regions so far */
  distSharedCalls(id: number): number;
  distCmaCalls(id: number): number;
  distCmaState(id: number): -1 | 0 | 1;
  distWaiting(id: number, delta: 1 | -1): void;
  distClose(id: number): void;
  /** blocks until no call started on group `id` is still running on its worker (the Promises settle later, on the event loop) */
  distWaitIdle(id: number): void;
  /** shm_unlink(name); false when it was already gone */
  distUnlink(name: string): boolean;
  /** elements of one piece of a call (op and dtype codes as in distRun) */
  distPieceElements(id: number, op: number, dtype: number): number;

  // MPI transport (native/binding_mpi.inc, native/dist_mpi.h): MPI itself is kestrel_mpi.so, opened here
  /** dlopen's the library built from native/mpi/kestrel_mpi.cc -> MPI's library version text */
  mpiLoad(path: string): string;
  /** MPI_Init_thread and the world group (stagings of slotBytes) -> its id */
  mpiInit(slotBytes: number, timeoutMs: number): Promise<number>;
  /** [rank in the group, size, ...global ranks of the members] */
  mpiGroupInfo(id: number): number[];
  /** a group of these members of the parent (their ranks in it), created by the members together -> id */
  mpiGroup(parentId: number, memberRanks: number[]): Promise<number>;
  /** one call, arguments as distRun's */
  mpiRun(
    id: number, op: number, reduce: number, dtype: number, peer: number, count: number, groupSize: number,
    srcHandle: number, srcByteOffset: number, dstHandle: number, dstByteOffset: number, timeoutMs: number, name: string,
  ): Promise<void>;
  /** mpiRun on the JS thread, blocking until done */
  mpiRunSync(
    id: number, op: number, reduce: number, dtype: number, peer: number, count: number, groupSize: number,
    srcHandle: number, srcByteOffset: number, dstHandle: number, dstByteOffset: number, timeoutMs: number, name: string,
  ): void;
  /** blocks until no call started on MPI group `id` is still running on its worker */
  mpiWaitIdle(id: number): void;
  mpiPieceElements(id: number, op: number, dtype: number): number;
  mpiFree(id: number): void;
  /** MPI_Finalize after exit code 0 with every group healthy, else MPI_Abort of the whole job */
  mpiFinish(exitCode: number): void;
}

/** The package root (where native/ and build/ live): src/backend and dist/backend sit two levels below it. */
export const packageRoot = (): string => join(dirname(fileURLToPath(import.meta.url)), '..', '..');

let cached: NativeAddon | null | undefined;
let loadError = '';

/** The addon, or null when it was not built (the reference backend still works). */
export function loadNative(): NativeAddon | null {
  if (cached !== undefined) return cached;
  const path = join(packageRoot(), 'build', 'Release', 'kestrel.node');
  try {
    if (!existsSync(path)) throw new Error(`${path} not found (run npm ci or npm run build)`);
    cached = createRequire(import.meta.url)(path) as NativeAddon;
  } catch (e) {
    loadError = (e as Error).message;
    cached = null;
  }
  return cached;
}

export const nativeLoadError = (): string => loadError;

/** Whether a bf16 GEMM path (NativeAddon.info().bf16Gemm) multiplies bf16 natively: AMX tiles or AVX512_BF16, not 'convert'. */
export const isNativeBf16Path = (path: string | null | undefined): boolean => path === 'amx' || path === 'avx512bf16';


