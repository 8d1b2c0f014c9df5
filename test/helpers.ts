// Shared test helpers: elementwise two-sided tolerances with a readable failure report,
// central-difference gradcheck in float64 on the reference backend, and a seeded data source.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as k from '../src/index.js';
import { loadNative, nativeLoadError } from '../src/backend/addon.js';
import { kestrelCommand } from '../src/cli/self.js';
import { childArgs } from './child_js.js';

export type Arrayish = k.Tensor | ArrayLike<number>;

function values(x: Arrayish): Float64Array {
  if (!(x instanceof k.Tensor)) return Float64Array.from(x);
  const raw = x.toTypedArray();
  return raw instanceof Float64Array ? raw : Float64Array.from(x.toFloat32Array());
}

/**
 * Asserts |got - want| <= atol + rtol |want| elementwise (NaN only matches NaN); on failure
 * reports the first mismatches, the max error and its index.
 */
export function assertClose(got: Arrayish, want: Arrayish, opts: { atol?: number; rtol?: number; what?: string } = {}): void {
  const { atol = 1e-5, rtol = 1e-4, what = 'tensor' } = opts;
  if (got instanceof k.Tensor && want instanceof k.Tensor)
    assert.deepEqual([...got.shape], [...want.shape], `${what}: shape [${got.shape}] != [${want.shape}]`);
  const g = values(got);
  const w = values(want);
  assert.equal(g.length, w.length, `${what}: ${g.length} elements vs ${w.length}`);
  const bad: string[] = [];
  let maxErr = 0;
  let maxAt = -1;
  for (let i = 0; i < g.length; i++) {
    const err = Math.abs(g[i] - w[i]);
    const ok = (Number.isNaN(g[i]) && Number.isNaN(w[i])) || g[i] === w[i] || err <= atol + rtol * Math.abs(w[i]);
    if (!ok) {
      if (bad.length < 5) bad.push(`[${i}] got ${g[i]} want ${w[i]}`);
      if (!(err <= maxErr)) {
        maxErr = err;
        maxAt = i;
      }
    }
  }
  if (bad.length) assert.fail(`${what}: mismatches (atol ${atol}, rtol ${rtol}): ${bad.join('; ')}; max error ${maxErr} at ${maxAt}`);
}

/** Deterministic float64 data in [lo, hi) from a tiny LCG (independent of the library's RNG). */
export function seeded(n: number, seed = 1, lo = -1, hi = 1): Float64Array {
  let s = seed >>> 0 || 1;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = lo + ((s >>> 8) / 16777216) * (hi - lo);
  }
  return out;
}

/** A float64 reference-backend leaf with seeded values. */
export function refLeaf(shape: number[], seed = 1, lo = -1, hi = 1): k.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return k.tensor(seeded(n, seed, lo, hi), { shape, dtype: 'float64', backend: 'ref', requiresGrad: true });
}

/**
 * Checks the analytic gradient of sum(f(inputs) * w) (w a fixed random weighting, so every
 * output element matters) against central differences, eps 1e-6, atol 1e-5, rtol 1e-3.
 */
export function gradcheck(f: (...xs: k.Tensor[]) => k.Tensor, inputs: k.Tensor[], opts: { eps?: number; atol?: number; rtol?: number; what?: string } = {}): void {
  const { eps = 1e-6, atol = 1e-5, rtol = 1e-3, what = 'gradcheck' } = opts;
  const out0 = k.noGrad(() => f(...inputs));
  const w = k.tensor(seeded(out0.numel, 99), { shape: [...out0.shape], dtype: 'float64', backend: 'ref' });
  out0.dispose();
  const objective = (xs: k.Tensor[]): number => k.tidy(() => k.noGrad(() => f(...xs).mul(w).sum().item()));
  for (const x of inputs) x.zeroGrad();
  k.tidy(() => f(...inputs).mul(w).sum().backward());
  inputs.forEach((x, xi) => {
    if (!x.requiresGrad) return;
    const data = x.toTypedArray() as Float64Array;
    const numeric = new Float64Array(data.length);
    const at = (i: number, v: number): number =>
      k.tidy(() => {
        const d = data.slice();
        d[i] = v;
        const moved = k.tensor(d, { shape: [...x.shape], dtype: 'float64', backend: 'ref' });
        return objective(inputs.map((t, j) => (j === xi ? moved : t)));
      });
    for (let i = 0; i < data.length; i++) numeric[i] = (at(i, data[i] + eps) - at(i, data[i] - eps)) / (2 * eps);
    assert.ok(x.grad, `${what}: input ${xi} got no gradient`);
    assert.deepEqual([...x.grad.shape], [...x.shape], `${what}: grad shape of input ${xi}`);
    assertClose(x.grad, numeric, { atol, rtol, what: `${what} d/dinput${xi}` });
  });
  w.dispose();
}

/** The same values on another backend and dtype, as a fresh leaf. */
export function like(x: k.Tensor, backend: k.BackendName, dtype: k.DType = x.dtype): k.Tensor {
  return k.noGrad(() => {
    const moved = x.to(backend);
    const cast = moved.to(dtype);
    if (cast !== moved) moved.dispose();
    return cast;
  });
}

export const hasCpu = (): boolean => k.hasBackend('cpu');

/** Seeded values in [lo, hi), rounded to dtype on the reference backend, then placed on `backend`. */
export function seededTensor(shape: number[], dtype: k.DType, backend: k.BackendName, seed = 1, lo = -1, hi = 1): k.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const r = k.tensor(seeded(n, seed, lo, hi), { shape, dtype: 'float64', backend: 'ref' }).to(dtype);
  return backend === 'ref' ? r : r.to(backend);
}

/**
 * Re-runs a test file in a child process with extra environment (the native SIMD level is read
 * once per process, so KESTREL_SIMD needs a fresh one); asserts it passed and returns its stdout.
 */
export function runChild(file: string, env: Record<string, string>, timeoutMs = 120_000): string {
  const r = spawnSync(process.execPath, childArgs(file), { env: { ...process.env, ...env }, encoding: 'utf8', timeout: timeoutMs });
  assert.equal(r.status, 0, `child failed (status ${r.status}, signal ${r.signal}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/**
 * The child side of runChild's KESTREL_SIMD re-runs: fn on the CPU addon with 1 and 2 threads,
 * then `ok` and the addon's info (the SIMD level it found) on stdout.
 */
export function onCpuThreads(fn: (threads: number) => void): void {
  const addon = loadNative();
  if (!addon) throw new Error(nativeLoadError());
  for (const threads of [1, 2]) {
    addon.setThreads(threads);
    fn(threads);
  }
  console.log(`ok ${JSON.stringify(addon.info())}`);
}

/**
 * Runs f with environment variable `name` set to `value` (unset for undefined), restoring it when
 * f returns or its promise settles; for the switches the kernels read per call.
 */
export function withEnv<T>(name: string, value: string | undefined, f: () => T): T {
  const old = process.env[name];
  const set = (v: string | undefined): void => {
    if (v === undefined) delete process.env[name];
    else process.env[name] = v;
  };
  set(value);
  let pending = false;
  try {
    const r = f();
    if (r instanceof Promise) {
      pending = true;
      return r.finally(() => set(old)) as T;
    }
    return r;
  } finally {
    if (!pending) set(old);
  }
}

/**
 * A temp folder with a 1-layer Llama config.json (vocab 32, hidden 16) and train.jsonl of 16
 * pre-tokenized rows of 10 ids: the smallest `kestrel train` run.
 */
export function tinyTrainDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  writeFileSync(join(dir, 'config.json'), JSON.stringify({
    model_type: 'llama', vocab_size: 32, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1,
    num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 64,
  }));
  const lines = Array.from({ length: 16 }, (_, i) => JSON.stringify({ input_ids: Array.from({ length: 10 }, (_, t) => (i * 3 + t) % 32) }));
  writeFileSync(join(dir, 'train.jsonl'), lines.join('\n') + '\n');
  return dir;
}

/** Runs `kestrel <args>` as a child (src/cli/self.ts: the sources, or dist/ where the test runner built it from them), with optional standard input. */
export function runCli(args: string[], input = ''): { status: number | null; stdout: string; stderr: string } {
  const { command, args: argv } = kestrelCommand(args);
  const r = spawnSync(command, argv, { input, encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

export interface CliProcess {
  child: ChildProcess;
  /** settles when the process exits; a process still alive after timeoutMs is killed and the promise rejects */
  exited: Promise<{ status: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
}

/** Starts `kestrel <args>` as a separate process, as a user does, for tests that signal it while it runs. */
export function startCli(args: string[], timeoutMs = 60_000): CliProcess {
  const { command, args: argv } = kestrelCommand(args);
  const child = spawn(command, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d));
  child.stderr!.on('data', (d: Buffer) => (stderr += d));
  const exited = new Promise<{ status: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`kestrel ${args.join(' ')} still running after ${timeoutMs} ms\n${stderr}`));
    }, timeoutMs);
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, stdout, stderr });
    });
  });
  return { child, exited };
}

/** Polls until cond() holds; rejects after timeoutMs (tests never wait unbounded). */
export async function waitFor(cond: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
