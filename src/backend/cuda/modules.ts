// Kernel modules: each native/cuda/kernels/<name>.cu is compiled by NVRTC at first use for the
// device's architecture and cached on disk ($XDG_CACHE_HOME/kestrel/cuda/, keyed by a hash of
// the source, its headers, the options, the architecture and the NVRTC version). A cache entry
// carries its own hash: a corrupt or truncated one, or one the driver refuses, is compiled again.
// The emulator serves the same files' kernels compiled into the addon (no NVRTC).
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../addon.js';
import { type CudaContext, cudaContext } from './context.js';

/** A kernel function of a loaded module. */
export interface CudaFunction {
  readonly name: string;
  readonly handle: number;
  /** parameter sizes the driver reports (empty when it cannot), checked against each launch */
  readonly paramSizes: readonly number[];
  checked: boolean;
}

const kernelDir = (): string => join(packageRoot(), 'native', 'cuda', 'kernels');

export const cacheDir = (): string =>
  join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'kestrel', 'cuda');

/** The options every module is compiled with (fast math stays off: results must match the CPU). */
export const compileOptions = (arch: string): string[] => [`--gpu-architecture=${arch}`, '-std=c++17', '-default-device', '-lineinfo'];

const MAGIC = 'KESTREL-CUBIN-1\n';

/** A cached image, or null when absent, truncated or corrupt (its hash does not match). */
export function readCachedImage(path: string): Uint8Array | null {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch {
    return null;
  }
  const head = MAGIC.length + 64 + 1;
  if (bytes.length <= head || bytes.subarray(0, MAGIC.length).toString() !== MAGIC) return null;
  const digest = bytes.subarray(MAGIC.length, MAGIC.length + 64).toString();
  const image = bytes.subarray(head);
  return createHash('sha256').update(image).digest('hex') === digest ? image : null;
}

/** Writes an image with its hash, atomically (temporary name, then rename). */
export function writeCachedImage(path: string, image: Uint8Array): void {
  try {
    mkdirSync(join(path, '..'), { recursive: true });
    const tmp = `${path}.tmp-${process.pid}`;
    const digest = createHash('sha256').update(image).digest('hex');
    writeFileSync(tmp, Buffer.concat([Buffer.from(MAGIC + digest + '\n'), image]));
    renameSync(tmp, path);
  } catch {
    // a read-only cache folder costs a recompile next time, nothing more
  }
}

interface Source {
  text: string;
  headerNames: string[];
  headerSources: string[];
}

function readSource(name: string): Source {
  const dir = kernelDir();
  const headerNames = readdirSync(dir).filter((f) => f.endsWith('.cuh')).sort();
  return {
    text: readFileSync(join(dir, `${name}.cu`), 'utf8'),
    headerNames,
    headerSources: headerNames.map((h) => readFileSync(join(dir, h), 'utf8')),
  };
}

/** Compiles (or takes from the cache) and loads module `name`; returns its module id. */
function loadModule(ctx: CudaContext, name: string): number {
  if (ctx.emulated) return ctx.addon.cudaModule(name, new Uint8Array(0));
  const src = readSource(name);
  const options = compileOptions(ctx.arch);
  const key = createHash('sha256')
    .update(JSON.stringify([src.text, src.headerNames, src.headerSources, options, ctx.arch, ctx.libraries.nvrtc.version]))
    .digest('hex');
  const path = join(cacheDir(), `${name}-${ctx.arch}-${key.slice(0, 24)}.cubin`);
  const cached = readCachedImage(path);
  if (cached) {
    try {
      return ctx.addon.cudaModule(name, cached);
    } catch {
      // stale for this driver: compile again below
    }
  }
  const t0 = performance.now();
  // the first run on a machine compiles each module once (seconds each); say so on a terminal
  if (process.stderr.isTTY && !process.env.KESTREL_CUDA_VERBOSE) process.stderr.write(`kestrel: compiling CUDA kernels ${name}.cu for ${ctx.arch} (cached in ${cacheDir()})\n`);
  const r = ctx.addon.cudaCompile(`${name}.cu`, src.text, src.headerNames, src.headerSources, options);
  if (!r.ok) throw new Error(`NVRTC could not compile native/cuda/kernels/${name}.cu for ${ctx.arch}:\n${r.log}`);
  if (process.env.KESTREL_CUDA_VERBOSE) process.stderr.write(`kestrel: compiled ${name}.cu for ${ctx.arch} in ${(performance.now() - t0).toFixed(0)} ms\n`);
  writeCachedImage(path, r.image);
  return ctx.addon.cudaModule(name, r.image);
}

/** The kernel modules (native/cuda/kernels/*.cu), by name. */
export const kernelModules = (): string[] => readdirSync(kernelDir()).filter((f) => f.endsWith('.cu')).map((f) => f.slice(0, -3)).sort();

/** Compiles (into the disk cache) and loads one module ahead of first use; returns milliseconds taken. */
export function precompile(module: string): number {
  const t0 = performance.now();
  if (!modules.has(module)) modules.set(module, loadModule(cudaContext(), module));
  return performance.now() - t0;
}

const modules = new Map<string, number>();
const functions = new Map<string, CudaFunction>();

/** Kernel `fn` of module `module` (a file in native/cuda/kernels/), loaded once. */
export function cudaKernel(module: string, fn: string): CudaFunction {
  const key = `${module}:${fn}`;
  const hit = functions.get(key);
  if (hit) return hit;
  const ctx = cudaContext();
  let id = modules.get(module);
  if (id === undefined) {
    id = loadModule(ctx, module);
    modules.set(module, id);
  }
  const f = ctx.addon.cudaFunction(id, fn);
  const entry: CudaFunction = { name: fn, handle: f.handle, paramSizes: f.paramSizes, checked: false };
  functions.set(key, entry);
  return entry;
}
