// Checks that need no GPU: (1) every CUDA kernel source compiles to PTX with Debian's clang (no
// CUDA SDK; native/cuda/clang_prelude.h declares the intrinsics), so a typo in a kernel fails
// `npm test` everywhere; (2) every kernel file is also built into the emulator; (3) without a
// driver, or with a broken library, the CUDA backend is a clear error that says what to install;
// (4) a corrupt kernel cache entry is rejected (and so recompiled) rather than loaded.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { libraryCandidates } from '../../src/backend/cuda/libraries.js';
import { readCachedImage, writeCachedImage } from '../../src/backend/cuda/modules.js';

const CUDA = join(import.meta.dirname, '..', '..', 'native', 'cuda');
const KERNELS = join(CUDA, 'kernels');
const sources = readdirSync(KERNELS).filter((f) => f.endsWith('.cu')).sort();
const clang = spawnSync('clang', ['--version'], { encoding: 'utf8' });
const noClang = clang.status === 0 ? false : 'clang is not installed (CI installs it: apt-get install -y clang)';
if (noClang && process.env.CI === 'true') throw new Error('CI must have clang to compile-check the CUDA kernels');

for (const file of sources)
  test(`${file} compiles to PTX (clang, sm_80)`, { skip: noClang }, () => {
    const out = join(mkdtempSync(join(tmpdir(), 'kestrel-ptx-')), file.replace('.cu', '.ptx'));
    // -O0: the front end and the PTX back end see every kernel all the same (NVRTC optimizes on the
    // GPU); -O3 took 20-30 s per attention file on 2 cores, -O0 about 1 s
    const r = spawnSync('clang', [
      '-x', 'cuda', '--cuda-device-only', '-nocudainc', '-nocudalib', '--cuda-gpu-arch=sm_80', '-Wno-unknown-cuda-version',
      '-O0', '-S', '-include', join(CUDA, 'clang_prelude.h'), '-I', KERNELS, join(KERNELS, file), '-o', out,
    ], { encoding: 'utf8' });
    assert.equal(r.status, 0, `clang failed on ${file}:\n${r.stderr}`);
    assert.match(readFileSync(out, 'utf8'), /\.entry /, `${file}: no kernel entry points in the PTX`);
  });

test('every kernel file is built into the emulator', () => {
  for (const file of sources) {
    const wrapper = join(CUDA, 'emu', `k_${file.replace('.cu', '.cc')}`);
    let text = '';
    try {
      text = readFileSync(wrapper, 'utf8');
    } catch {
      assert.fail(`${file} has no emulator wrapper ${wrapper}`);
    }
    assert.ok(text.includes(`#include "../kernels/${file}"`), `${wrapper} must include ../kernels/${file}`);
  }
});

/** Runs a snippet in a child with the given environment (the CUDA context is opened once per process). */
function child(code: string, env: Record<string, string | undefined>): { status: number | null; out: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', '-e', code], {
    env: { ...process.env, KESTREL_CUDA_EMULATE: undefined, ...env }, encoding: 'utf8', cwd: join(import.meta.dirname, '..', '..'),
  });
  return { status: r.status, out: r.stdout + r.stderr };
}

const hasDriver = libraryCandidates().driver.length > 1;

test('no driver: the cuda backend is a clear error naming what to install', { skip: hasDriver ? 'this machine has an NVIDIA driver' : false }, () => {
  const r = child(`import * as k from './src/index.ts';
    try { k.getBackend('cuda'); console.log('OPENED'); } catch (e) { console.log('ERR', e.message); }
    console.log('HAS', k.hasBackend('cuda'));`, {});
  assert.equal(r.status, 0, r.out);
  assert.match(r.out, /ERR backend 'cuda' is unavailable: no usable CUDA device: libcuda\.so\.1 not found \(install the NVIDIA driver\)/);
  assert.match(r.out, /HAS false/);
});

test('a broken library file is named in the error', { skip: hasDriver ? 'this machine has an NVIDIA driver' : false }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'kestrel-fake-cuda-'));
  writeFileSync(join(dir, 'libnvrtc.so.13'), 'not a shared object');
  const r = child(`import { cudaStatus } from './src/backend/cuda/context.ts';
    const s = cudaStatus(); console.log(JSON.stringify({ usable: s.usable, nvrtc: s.libraries?.nvrtc.error }));`, { KESTREL_CUDA_LIB_DIRS: dir });
  assert.equal(r.status, 0, r.out);
  const s = JSON.parse(r.out.trim().split('\n').pop()!) as { usable: boolean; nvrtc: string };
  assert.equal(s.usable, false);
  assert.ok(s.nvrtc.includes(join(dir, 'libnvrtc.so.13')), `the error should name the broken file: ${s.nvrtc}`);
  assert.match(s.nvrtc, /pip install nvidia-cuda-nvrtc/);
});

test('kernel cache entries carry a hash: a corrupt or truncated entry is not loaded', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kestrel-cubin-'));
  const path = join(dir, 'm.cubin');
  const image = new Uint8Array(1000).map((_, i) => (i * 7) & 255);
  writeCachedImage(path, image);
  assert.deepEqual(new Uint8Array(readCachedImage(path) ?? []), image);
  const bytes = readFileSync(path);
  bytes[bytes.length - 3] ^= 1;
  writeFileSync(path, bytes);
  assert.equal(readCachedImage(path), null);
  writeFileSync(path, bytes.subarray(0, 40));
  assert.equal(readCachedImage(path), null);
  assert.equal(readCachedImage(join(dir, 'missing.cubin')), null);
});
