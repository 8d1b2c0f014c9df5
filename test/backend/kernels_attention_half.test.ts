// Attention with bfloat16 / float16 q, k, v on cuda (native/cuda/kernels/attention_tc*.cu on tensor
// cores, or the float32 kernels through copies where the head dims are no multiple of 8) against the
// float64 reference run on the same 16-bit-rounded inputs and upstream gradient, forward and backward
// through the public op: T of 1, 7, 33, 257, head dims 16 to 256 (every tile shape, and head dims the
// tiles pad with zero columns), GQA (and its split dk/dv pass), causal with Tq != Tk, sliding window,
// soft-capping, every mask kind, dropout (the reference's Philox mask), rows with no visible key; the
// float32 logsumexp; every gradient element written; misaligned views; the dtype checks. Shapes that
// cut the tiles unevenly (128-query forward blocks, 64-key dk/dv blocks, hd 256's single buffers), and
// dq both ways: float32 atomics in the dk/dv pass (the default) and the separate deterministic pass
// (KESTREL_DETERMINISTIC=1), each with and without the GQA split.
// Tolerance: the kernels round P~ and dS to the input type before their products (as FlashAttention-2
// does) and write out, dq, dk, dv in it, so errors are a few units of the type's last place on values
// of order 1: bf16 (8 significant bits, 2^-8 = 4e-3) gets atol = rtol = 2e-2, f16 (11 bits) 4e-3.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { skipUnless } from '../devices.js';
import * as k from '../../src/index.js';
import { assertClose, withEnv } from '../helpers.js';
import { type Case, compare, dispose, pair } from './attention_cases.js';

const TOL: Record<'bfloat16' | 'float16', { atol: number; rtol: number }> = {
  bfloat16: { atol: 2e-2, rtol: 2e-2 },
  float16: { atol: 4e-3, rtol: 4e-3 },
};

const GROUPS: Record<string, Case[]> = {
  sizes: [1, 7, 33, 257].flatMap((T) => [64, 128].flatMap((hd) => [{ Tq: T, hd }, { Tq: T, hd, causal: true }])),
  heads: [
    { H: 4, Hkv: 2, Tq: 33, hd: 64, causal: true },
    { H: 4, Hkv: 1, Tq: 70, hd: 128 },
    { H: 8, Hkv: 2, B: 1, Tq: 257, hd: 64, causal: true },
  ],
  masks: [
    { Tq: 33, hd: 64, mask: 'pad', causal: true },
    { Tq: 7, hd: 64, mask: 'full' },
    { Tq: 9, Tk: 20, hd: 128, mask: 'fullT', causal: true },
    { Tq: 33, Tk: 70, hd: 64, mask: 'head', H: 4, Hkv: 2 },
    { Tq: 130, hd: 64, B: 1, mask: 'pad', causal: true },
    { Tq: 33, hd: 64, mask: 'bool', causal: true },
  ],
  windows: [
    { Tq: 33, hd: 64, causal: true, window: 5 },
    { Tq: 257, hd: 64, B: 1, causal: true, window: 70 },
    { Tq: 33, hd: 128, window: 4 },
    { Tq: 7, Tk: 257, hd: 64, causal: true, window: 100 },
  ],
  softcap: [
    { Tq: 33, hd: 64, softcap: 0.5, scale: 1 },
    { Tq: 257, hd: 128, B: 1, softcap: 3, scale: 0.5, causal: true, mask: 'pad' },
  ],
  dropout: [
    { Tq: 33, hd: 64, dropout: 0.2 },
    { Tq: 130, hd: 64, B: 1, dropout: 0.5, causal: true, H: 4, Hkv: 2 },
    { Tq: 7, Tk: 33, hd: 128, dropout: 0.1, mask: 'full' },
  ],
  lengths: [
    { Tq: 1, Tk: 257, hd: 64, causal: true }, // decode
    { Tq: 1, Tk: 257, hd: 128, H: 8, Hkv: 2, B: 1 },
    { Tq: 7, Tk: 33, hd: 64, causal: true }, // chunked prefill
    { Tq: 33, Tk: 7, hd: 64, causal: true }, // queries 0..25 see no key
    { Tq: 33, hd: 64, hdv: 32, causal: true }, // hdv != hd
    { Tq: 20, Tk: 30, hd: 32, hdv: 128 },
  ],
  // tiles cut unevenly: causal Tq != Tk past several 128-query forward blocks and 64-key dk/dv blocks,
  // the fast (no mask) kernels at every head-dim bound
  tiles: [
    { Tq: 129, hd: 64, causal: true, B: 1, H: 4, Hkv: 2 },
    { Tq: 200, Tk: 130, hd: 32, causal: true, B: 1 },
    { Tq: 130, Tk: 200, hd: 128, causal: true, B: 1 },
    { Tq: 70, hd: 256, B: 1, causal: true },
    { Tq: 50, Tk: 90, hd: 256, B: 1, H: 4, Hkv: 2, window: 30, causal: true },
  ],
  // every tile shape (head-dim bounds 32, 64, 128, 256), zero-padded columns, and the float32 fallback
  headDims: [
    { Tq: 33, hd: 16, causal: true },
    { Tq: 40, hd: 32, H: 4, Hkv: 2 },
    { Tq: 40, hd: 96, hdv: 64, softcap: 1, scale: 0.3 },
    { Tq: 17, hd: 256, B: 1, mask: 'pad', softcap: 2, scale: 0.1 },
    { Tq: 65, Tk: 100, hd: 256, B: 1, H: 2, Hkv: 1, causal: true, window: 50, mask: 'head', dropout: 0.1 },
    { Tq: 33, hd: 200, hdv: 136, B: 1 },
    { Tq: 33, hd: 7, H: 4, Hkv: 2, causal: true, window: 9 }, // no multiple of 8: float32 kernels
    { Tq: 9, Tk: 12, hd: 36, hdv: 20, B: 1 },
  ],
};

// On the CUDA emulator (CI), float16 runs the groups that reach every tile shape and head dim; the
// masks, windows, soft-capping, dropout, uneven tiles and dq variants go through the same kernel
// templates as bfloat16, which runs them all there (they took over a minute more of CI for float16).
// On a GPU both dtypes run everything.
const EMULATED = process.env.KESTREL_CUDA_EMULATE === '1';
const ON_EMULATOR_F16 = new Set(['sizes', 'heads', 'lengths', 'headDims']);

for (const dtype of ['bfloat16', 'float16'] as const)
  describe(`attention on cuda with ${dtype} q, k, v vs the float64 reference`, { skip: skipUnless('cuda') }, () => {
    const tol = TOL[dtype];
    const every = !EMULATED || dtype === 'bfloat16';
    for (const [name, cases] of Object.entries(GROUPS))
      if (every || ON_EMULATOR_F16.has(name))
        test(name, () => {
          for (const c of cases) compare('cuda', c, tol, dtype);
        });

    if (every) test("GQA with the dk/dv pass split 2 and 4 ways over each group's query heads", () => {
      for (const split of ['2', '4'])
        withEnv('KESTREL_CUDA_ATTN_SPLIT', split, () => {
          for (const c of [...GROUPS.heads, GROUPS.dropout[1], GROUPS.masks[3], GROUPS.tiles[4]]) compare('cuda', c, tol, dtype);
        });
    });

    // attention_decode.cu: one key share per (batch, head) and several, merged after; more shares
    // asked than chunks of 32 keys get one per chunk; rows in 16-byte pieces and not (hd 7, 36)
    test('a decode step split over its keys (KESTREL_CUDA_DECODE_SPLITS 1, 3, 64)', () => {
      const cases: Case[] = [
        { Tq: 1, Tk: 257, hd: 64, causal: true, H: 8, Hkv: 2 },
        { Tq: 1, Tk: 300, hd: 128, B: 1, mask: 'pad' },
        { Tq: 1, Tk: 70, hd: 256, B: 1, softcap: 2, scale: 0.1, causal: true, window: 40 },
        { Tq: 1, Tk: 33, hd: 7, H: 4, Hkv: 2, mask: 'head' },
        { Tq: 1, Tk: 40, hd: 36, hdv: 20, B: 1 },
      ];
      for (const splits of ['1', '3', '64']) withEnv('KESTREL_CUDA_DECODE_SPLITS', splits, () => cases.forEach((c) => compare('cuda', c, tol, dtype)));
    });

    if (every) test('dq by the deterministic pass (KESTREL_DETERMINISTIC=1), with and without the GQA split', () => {
      withEnv('KESTREL_DETERMINISTIC', '1', () => {
        const cases = [...GROUPS.tiles, GROUPS.sizes[13], GROUPS.sizes[15], GROUPS.heads[2], GROUPS.masks[2], GROUPS.windows[1], GROUPS.softcap[1], GROUPS.dropout[1], GROUPS.headDims[4]];
        for (const c of cases) compare('cuda', c, tol, dtype);
        withEnv('KESTREL_CUDA_ATTN_SPLIT', '2', () => compare('cuda', GROUPS.heads[0], tol, dtype));
      });
    });

    test('non-contiguous q, k, v (transposed [B, T, H, hd] views)', () => {
      compare('cuda', { Tq: 33, hd: 64, strided: true, causal: true }, tol, dtype);
    });

    test('the logsumexp is float32, -inf on rows with no visible key; out has the input dtype', () => {
      const dev = k.getBackend('cuda');
      const ref = k.getBackend('ref');
      const [B, H, Tq, Tk, hd] = [1, 2, 70, 9, 64];
      const [q, kk, v] = [pair('cuda', [B, H, Tq, hd], 1, -1, 1, false, dtype), pair('cuda', [B, H, Tk, hd], 2, -1, 1, false, dtype), pair('cuda', [B, H, Tk, hd], 3, -1, 1, false, dtype)];
      const opts = { scale: 0.125, causal: true, window: 0, softcap: 0, dropout: 0, seed: 0, counter: 0 };
      const out = k.empty([B, H, Tq, hd], dtype, { backend: 'cuda' });
      const lc = k.empty([B, H, Tq], 'float32', { backend: 'cuda' });
      const lr = k.empty([B, H, Tq], 'float64', { backend: 'ref' });
      dev.kernels.attention(q.c, kk.c, v.c, null, opts, out, lc);
      ref.kernels.attention(q.r, kk.r, v.r, null, opts, k.empty([B, H, Tq, hd], 'float64', { backend: 'ref' }), lr);
      const got = lc.toFloat32Array();
      // float32 dot products of exact 16-bit values: only the accumulation order (and exp2 / log) differ
      assertClose(got, lr.toTypedArray() as Float64Array, { atol: 1e-4, rtol: 1e-4, what: 'lse' });
      assert.equal(got[0], -Infinity); // shift = -61: query 0 sees nothing
      assert.ok(out.toFloat32Array().slice(0, hd).every((x) => x === 0), 'out of a row with no visible key is 0');
      k.tidy(() => [out, lc, lr].forEach((t) => t.dispose()));
      dispose(q, kk, v);
    });

    test('backward writes every element of dq, dk, dv (keys no query sees get 0)', () => {
      const dev = k.getBackend('cuda');
      // Tq = 4 queries at the end of Tk = 150 keys with a window of 3: keys 0..145 are invisible
      const [B, H, Hkv, Tq, Tk, hd] = [2, 4, 2, 4, 150, 64];
      const mk = (shape: number[], seed: number) => pair('cuda', shape, seed, -1, 1, false, dtype).c;
      const [q, kk, v, g] = [mk([B, H, Tq, hd], 1), mk([B, Hkv, Tk, hd], 2), mk([B, Hkv, Tk, hd], 3), mk([B, H, Tq, hd], 4)];
      const opts = { scale: 0.125, causal: true, window: 3, softcap: 0, dropout: 0, seed: 0, counter: 0 };
      const out = k.empty([B, H, Tq, hd], dtype, { backend: 'cuda' });
      const lse = k.empty([B, H, Tq], 'float32', { backend: 'cuda' });
      dev.kernels.attention(q, kk, v, null, opts, out, lse);
      const nan = (shape: number[]) => k.full(shape, NaN, { dtype, backend: 'cuda' });
      const [dq, dk, dv] = [nan([B, H, Tq, hd]), nan([B, Hkv, Tk, hd]), nan([B, Hkv, Tk, hd])];
      dev.kernels.attentionBackward(q, kk, v, null, out, lse, g, opts, dq, dk, dv);
      for (const [name, t] of [['dq', dq], ['dk', dk], ['dv', dv]] as const)
        assert.ok(t.toFloat32Array().every(Number.isFinite), `${name} has unwritten (NaN) elements`);
      const dka = dk.toFloat32Array();
      for (let b = 0; b < B * Hkv; b++)
        for (let j = 0; j < Tk - Tq - 2; j++) assert.equal(dka[(b * Tk + j) * hd], 0, `dk of invisible key ${j}`);
      k.tidy(() => [q, kk, v, g, out, lse, dq, dk, dv].forEach((t) => t.dispose()));
    });

    test('q, k, v, dout at an odd element offset (not 16-byte aligned) run through float32 copies', () => {
      const dev = k.getBackend('cuda');
      const ref = k.getBackend('ref');
      const [B, H, T, hd] = [1, 2, 33, 64];
      const shape = [B, H, T, hd];
      const n = B * H * T * hd;
      // a contiguous view one element into its storage
      const odd = (seed: number): { c: k.Tensor; r: k.Tensor } => {
        const p = pair('cuda', [n + 1], seed, -1, 1, false, dtype);
        return { c: p.c.narrow(0, 1, n).reshape(shape), r: p.r.narrow(0, 1, n).reshape(shape) };
      };
      const [q, kk, v, g] = [odd(1), odd(2), odd(3), odd(4)];
      const opts = { scale: 0.125, causal: true, window: 0, softcap: 0, dropout: 0, seed: 0, counter: 0 };
      const on = (backend: 'cuda' | 'ref', dt: k.DType) => ({
        out: k.empty(shape, dt, { backend }), lse: k.empty([B, H, T], backend === 'ref' ? 'float64' : 'float32', { backend }),
        dq: k.empty(shape, dt, { backend }), dk: k.empty(shape, dt, { backend }), dv: k.empty(shape, dt, { backend }),
      });
      const [c, r] = [on('cuda', dtype), on('ref', 'float64')];
      dev.kernels.attention(q.c, kk.c, v.c, null, opts, c.out, c.lse);
      dev.kernels.attentionBackward(q.c, kk.c, v.c, null, c.out, c.lse, g.c, opts, c.dq, c.dk, c.dv);
      ref.kernels.attention(q.r, kk.r, v.r, null, opts, r.out, r.lse);
      ref.kernels.attentionBackward(q.r, kk.r, v.r, null, r.out, r.lse, g.r, opts, r.dq, r.dk, r.dv);
      for (const what of ['out', 'lse', 'dq', 'dk', 'dv'] as const)
        assertClose(c[what].toFloat32Array(), Float64Array.from(r[what].toFloat32Array()), { ...tol, what });
      k.tidy(() => [q, kk, v, g].flatMap((x) => [x.c, x.r]).concat(Object.values(c), Object.values(r)).forEach((t) => t.dispose()));
    });

    test('dtype checks name the kernel and operand', () => {
      const dev = k.getBackend('cuda');
      const h = (shape: number[], dt: k.DType = dtype) => k.zeros(shape, { dtype: dt, backend: 'cuda' });
      const o = { scale: 1, causal: false, window: 0, softcap: 0, dropout: 0, seed: 0, counter: 0 };
      const [q, kv] = [h([1, 2, 3, 8]), h([1, 2, 5, 8])];
      const bad: [RegExp, () => void][] = [
        [/attention: k must be/, () => dev.kernels.attention(q, h([1, 2, 5, 8], 'float32'), kv, null, o, h([1, 2, 3, 8]), h([1, 2, 3], 'float32'))],
        [/attention: lse must be float32/, () => dev.kernels.attention(q, kv, kv, null, o, h([1, 2, 3, 8]), h([1, 2, 3]))],
        [/attention: out must be/, () => dev.kernels.attention(q, kv, kv, null, o, h([1, 2, 3, 8], 'float32'), h([1, 2, 3], 'float32'))],
        [/attention: mask must be float32/, () => dev.kernels.attention(q, kv, kv, h([1, 1, 3, 5]), o, h([1, 2, 3, 8]), h([1, 2, 3], 'float32'))],
        [/attention_backward: dk must be/, () => dev.kernels.attentionBackward(q, kv, kv, null, h([1, 2, 3, 8]), h([1, 2, 3], 'float32'), h([1, 2, 3, 8]), o, h([1, 2, 3, 8]), h([1, 2, 5, 8], 'float32'), kv)],
      ];
      for (const [re, f] of bad) assert.throws(f, re);
    });
  });
