// The native attention kernels (cpu: native/attention.cc; cuda: native/cuda/kernels/attention*.cu,
// on a GPU or the emulator) in float32 against the float64 reference backend
// (src/backend/ref/attention.ts, the naive formula), forward and backward through the public op
// (out.backward(g) runs attention_backward): T of 1, 7, 33, 257 with hd 1 to 256, GQA and MQA,
// padding / full / per-head masks (additive and bool), causal, sliding window, soft-capping, dropout
// (the same Philox mask as the reference), Tq != Tk (decode, chunked prefill, rows with no visible
// key), hdv != hd, non-contiguous q/k/v; the logsumexp; every gradient element written; bad
// arguments; and the O(T) memory of forward + backward. Tolerance: rtol 1e-4, atol 1e-5.
// CPU only: the AVX2 and scalar bodies (child processes with KESTREL_SIMD set) and the backward's
// task shapes (KESTREL_ATTN_BACKWARD); cuda only: the split GQA dk/dv pass (KESTREL_CUDA_ATTN_SPLIT).
// bfloat16 / float16 inputs: kernels_attention_half.test.ts.
import { ALL_DEVICES, type Device, skipUnless } from '../devices.js';
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import * as k from '../../src/index.js';
import { assertClose, onCpuThreads, runChild, withEnv } from '../helpers.js';
import { type Case, compare as compareAt, dispose, pair } from './attention_cases.js';

const CHILD = process.env.KESTREL_ATTN_CHILD === '1';
const TOL = { atol: 1e-5, rtol: 1e-4 };

const compare = (device: Device, c: Case): void => compareAt(device, c, TOL);

// ---------------------------------------------------------------- groups (also run by the SIMD children)

const SIZES = [1, 7, 33, 257];

const GROUPS: Record<string, Case[]> = {
  sizes: SIZES.flatMap((T) => [8, 16, 64].flatMap((hd) => [{ Tq: T, hd }, { Tq: T, hd, causal: true }])),
  heads: [
    { H: 4, Hkv: 2, Tq: 33, hd: 16, causal: true },
    { H: 4, Hkv: 1, Tq: 33, hd: 16 },
    { H: 8, Hkv: 2, B: 1, Tq: 257, hd: 64, causal: true },
    { H: 72, Hkv: 1, B: 1, Tq: 3, hd: 8, causal: true }, // more query heads than a row block
  ],
  masks: [
    { Tq: 33, hd: 16, mask: 'pad' },
    { Tq: 33, hd: 16, mask: 'pad', causal: true },
    { Tq: 7, hd: 8, mask: 'full' },
    { Tq: 9, Tk: 20, hd: 8, mask: 'fullT', causal: true },
    { Tq: 33, Tk: 70, hd: 16, mask: 'head', H: 4, Hkv: 2 },
    { Tq: 257, hd: 16, B: 1, mask: 'pad', causal: true },
  ],
  windows: [
    { Tq: 33, hd: 16, causal: true, window: 5 },
    { Tq: 257, hd: 16, B: 1, causal: true, window: 70 },
    { Tq: 33, hd: 8, window: 4 },
    { Tq: 7, Tk: 257, hd: 16, causal: true, window: 100 },
  ],
  softcap: [
    { Tq: 33, hd: 16, softcap: 0.5, scale: 1 },
    { Tq: 257, hd: 64, B: 1, softcap: 3, scale: 1, causal: true, mask: 'pad' },
  ],
  dropout: [
    { Tq: 33, hd: 16, dropout: 0.2 },
    { Tq: 257, hd: 16, B: 1, dropout: 0.5, causal: true, H: 4, Hkv: 2 },
    { Tq: 7, Tk: 33, hd: 8, dropout: 0.1, mask: 'full' },
  ],
  lengths: [
    { Tq: 1, Tk: 257, hd: 64, causal: true }, // decode
    { Tq: 1, Tk: 257, hd: 64, H: 8, Hkv: 2, B: 1 },
    { Tq: 7, Tk: 33, hd: 16, causal: true }, // chunked prefill
    { Tq: 33, Tk: 7, hd: 16, causal: true }, // queries 0..25 see no key
    { Tq: 33, Tk: 7, hd: 16 },
    { Tq: 33, hd: 16, hdv: 8, causal: true }, // hdv != hd
    { Tq: 7, hd: 7, hdv: 33 },
  ],
  // one query position (a decode step): native/attention_tiles.inc's forward_one, with every option
  // it takes; dropout still goes through the tiles
  decode: [
    { Tq: 1, Tk: 33, hd: 64, H: 9, Hkv: 3, B: 1, causal: true }, // smol135m's grouping
    { Tq: 1, Tk: 7, hd: 7, hdv: 33, H: 4, Hkv: 2 },
    { Tq: 1, Tk: 257, hd: 16, mask: 'pad', causal: true },
    { Tq: 1, Tk: 33, hd: 16, mask: 'full' },
    { Tq: 1, Tk: 70, hd: 17, mask: 'head', H: 4, Hkv: 2 },
    { Tq: 1, Tk: 257, hd: 16, causal: true, window: 100 },
    { Tq: 1, Tk: 20, hd: 8, softcap: 0.5, scale: 1, H: 6, Hkv: 1 },
    { Tq: 1, Tk: 1, hd: 8 },
    { Tq: 1, Tk: 33, hd: 16, dropout: 0.2 },
    // long enough that the keys split into parts, merged after (few kv heads for the threads)
    { Tq: 1, Tk: 301, hd: 17, hdv: 33, H: 6, Hkv: 2, B: 1, mask: 'full' },
    { Tq: 1, Tk: 513, hd: 64, H: 9, Hkv: 3, B: 1, causal: true, softcap: 2, scale: 0.2 },
    { Tq: 1, Tk: 1030, hd: 8, H: 2, Hkv: 1, B: 1, mask: 'head' },
  ],
  // head dims that are no multiple of anything, and the largest tiles (hd up to 256: Gemma)
  headDims: [
    { Tq: 7, hd: 1, causal: true },
    { Tq: 33, hd: 7, H: 4, Hkv: 2, causal: true, window: 9 },
    { Tq: 33, Tk: 40, hd: 33, hdv: 17, mask: 'full' },
    { Tq: 20, Tk: 41, hd: 128, causal: true, dropout: 0.1, H: 4, Hkv: 1, B: 1 },
    { Tq: 17, hd: 256, B: 1, mask: 'pad', softcap: 2, scale: 0.1 },
    { Tq: 9, Tk: 12, hd: 200, hdv: 130, B: 1 },
    { Tq: 65, Tk: 257, hd: 256, B: 1, H: 2, Hkv: 1, causal: true, window: 150, mask: 'head', dropout: 0.1 },
    { Tq: 257, hd: 128, B: 1, causal: true },
    { Tq: 40, hd: 96, hdv: 64, softcap: 1, scale: 0.3 },
  ],
};


if (CHILD) {
  onCpuThreads((threads) =>
    // one thread: the grouped backward; two: split where B Hkv cannot keep both threads busy
    withEnv('KESTREL_ATTN_BACKWARD', threads === 2 ? 'split' : undefined, () => {
      for (const cases of Object.values(GROUPS)) for (const c of cases) compare('cpu', c);
    }),
  );
} else {
  for (const device of ALL_DEVICES)
    describe(`attention on ${device} vs the float64 reference`, { skip: skipUnless(device) }, () => {
      for (const [name, cases] of Object.entries(GROUPS))
        test(name, () => {
          for (const c of cases) compare(device, c);
        });
      if (device === 'cpu')
        // The backward has two task shapes (grouped: one task per (b, kv head) also owning dq; split:
        // per key block plus a dq pass); the default picks by thread count, the others force one.
        for (const mode of ['split', 'grouped'])
          for (const [name, cases] of Object.entries(GROUPS))
            test(`${name} (${mode} backward)`, () => withEnv('KESTREL_ATTN_BACKWARD', mode, () => cases.forEach((c) => compare(device, c))));
      if (device === 'cuda')
        // GQA's dk/dv pass with a block per share of each group's query heads, summed after
        for (const split of ['2', '4'])
          test(`GQA with the dk/dv pass split ${split} ways over each group's query heads`, () =>
            withEnv('KESTREL_CUDA_ATTN_SPLIT', split, () => {
              for (const c of [...GROUPS.heads, ...GROUPS.dropout, GROUPS.masks[4]]) compare(device, c);
            }));

      if (device === 'cuda')
        // attention_decode.cu: one key share per (batch, head) and several, merged after; more
        // shares asked than chunks of 32 keys get one per chunk
        test('decode steps split over their keys (KESTREL_CUDA_DECODE_SPLITS 1, 3, 64)', () => {
          for (const splits of ['1', '3', '64']) withEnv('KESTREL_CUDA_DECODE_SPLITS', splits, () => GROUPS.decode.forEach((c) => compare(device, c)));
        });

      test('a NaN score gives NaN in a decode step too, in its row only', () => {
        const [B, H, Tk, hd] = [1, 3, 100, 8];
        const qa = new Float32Array(B * H * hd).map((_, i) => Math.sin(i));
        qa.fill(NaN, hd, 2 * hd); // head 1
        const q = k.tensor(qa, { shape: [B, H, 1, hd], backend: device });
        const kv = k.tensor(new Float32Array(B * H * Tk * hd).map((_, i) => Math.cos(i)), { shape: [B, H, Tk, hd], backend: device });
        const opts = { scale: 0.25, causal: true, window: 0, softcap: 0, dropout: 0, seed: 0, counter: 0 };
        for (const splits of ['1', '3'])
          withEnv('KESTREL_CUDA_DECODE_SPLITS', splits, () => {
            const out = k.empty([B, H, 1, hd], 'float32', { backend: device });
            const lse = k.empty([B, H, 1], 'float32', { backend: device });
            k.getBackend(device).kernels.attention(q, kv, kv, null, opts, out, lse);
            const [o, l] = [out.toFloat32Array(), lse.toFloat32Array()];
            for (let h = 0; h < H; h++) {
              assert.equal(Number.isNaN(l[h]), h === 1, `lse of head ${h} (${splits} splits)`);
              for (let c = 0; c < hd; c++) assert.equal(Number.isNaN(o[h * hd + c]), h === 1, `out of head ${h} col ${c} (${splits} splits)`);
            }
            k.tidy(() => [out, lse].forEach((t) => t.dispose()));
          });
        k.tidy(() => [q, kv].forEach((t) => t.dispose()));
      });

      test('a bool padding mask', () => {
        compare(device, { Tq: 33, hd: 16, mask: 'bool', causal: true });
      });

      test('non-contiguous q, k, v (transposed [B, T, H, hd] views)', () => {
        compare(device, { Tq: 33, hd: 16, strided: true, causal: true });
        compare(device, { Tq: 7, hd: 8, H: 4, Hkv: 2, strided: true });
        compare(device, { Tq: 1, Tk: 33, hd: 16, H: 4, Hkv: 2, strided: true });
      });

      test('logsumexp rows, including -inf for rows with no visible key', () => {
        const dev = k.getBackend(device);
        const ref = k.getBackend('ref');
        const [B, H, Tq, Tk, hd] = [1, 2, 40, 9, 16];
        const [q, kk, v] = [pair(device, [B, H, Tq, hd], 1), pair(device, [B, H, Tk, hd], 2), pair(device, [B, H, Tk, hd], 3)];
        const opts = { scale: 0.25, causal: true, window: 0, softcap: 0, dropout: 0, seed: 0, counter: 0 };
        const lc = k.empty([B, H, Tq], 'float32', { backend: device });
        const lr = k.empty([B, H, Tq], 'float64', { backend: 'ref' });
        dev.kernels.attention(q.c, kk.c, v.c, null, opts, k.empty([B, H, Tq, hd], 'float32', { backend: device }), lc);
        ref.kernels.attention(q.r, kk.r, v.r, null, opts, k.empty([B, H, Tq, hd], 'float64', { backend: 'ref' }), lr);
        const got = lc.toFloat32Array();
        assertClose(got, lr.toTypedArray() as Float64Array, { ...TOL, what: 'lse' });
        assert.equal(got[0], -Infinity); // shift = -31: query 0 sees nothing
        assert.ok(Number.isFinite(got[Tq - 1]));
        dispose(q, kk, v);
      });

      test('a decode step whose later key parts are all masked, and a row that sees no key at all', () => {
        // 300 keys split into parts on 2+ threads: keys >= 40 are masked for batch 0 (every part
        // after the first sees nothing: its weight in the merge must be 0), all of them for batch 1
        const [B, H, Tk, hd] = [2, 1, 300, 16];
        const [q, kk, v] = [pair(device, [B, H, 1, hd], 1), pair(device, [B, H, Tk, hd], 2), pair(device, [B, H, Tk, hd], 3)];
        const m = Float32Array.from({ length: B * Tk }, (_, i) => (i < 40 ? 0 : -Infinity));
        const opts = { scale: 0.25, causal: false, window: 0, softcap: 0, dropout: 0, seed: 0, counter: 0 };
        const run = (dev: Device | 'ref', ins: k.Tensor[], dtype: 'float32' | 'float64') => {
          const mask = k.tensor(dtype === 'float32' ? m : Float64Array.from(m), { shape: [B, 1, 1, Tk], dtype, backend: dev });
          const out = k.empty([B, H, 1, hd], dtype, { backend: dev });
          const lse = k.empty([B, H, 1], dtype, { backend: dev });
          k.getBackend(dev).kernels.attention(ins[0], ins[1], ins[2], mask, opts, out, lse);
          const res = [Float64Array.from(out.toTypedArray() as ArrayLike<number>), Float64Array.from(lse.toTypedArray() as ArrayLike<number>)];
          k.tidy(() => [mask, out, lse].forEach((t) => t.dispose()));
          return res;
        };
        const [out, lse] = run(device, [q.c, kk.c, v.c], 'float32');
        const [wantOut, wantLse] = run('ref', [q.r, kk.r, v.r], 'float64');
        assertClose(out.subarray(0, hd), wantOut.subarray(0, hd), { ...TOL, what: 'out of the row that sees 40 keys' });
        assertClose(lse.subarray(0, 1), wantLse.subarray(0, 1), { ...TOL, what: 'its lse' });
        assert.deepEqual([...out.subarray(hd)], new Array(hd).fill(0), 'a row that sees no key gives 0');
        assert.equal(lse[1], -Infinity);
        dispose(q, kk, v);
      });

      test('a NaN score gives NaN (as PyTorch), not the zero row of a query that sees no key', () => {
        // query 2 of head 0 is NaN: its row (and only it) must be NaN in out and lse; hiding it
        // as 0 lets a diverged run train on silently
        const [B, H, T, hd] = [1, 2, 7, 8];
        const qa = new Float32Array(B * H * T * hd).map((_, i) => Math.sin(i));
        qa.fill(NaN, 2 * hd, 3 * hd);
        const q = k.tensor(qa, { shape: [B, H, T, hd], backend: device });
        const kv = k.tensor(new Float32Array(B * H * T * hd).map((_, i) => Math.cos(i)), { shape: [B, H, T, hd], backend: device });
        const opts = { scale: 0.25, causal: true, window: 0, softcap: 0, dropout: 0, seed: 0, counter: 0 };
        const out = k.empty([B, H, T, hd], 'float32', { backend: device });
        const lse = k.empty([B, H, T], 'float32', { backend: device });
        k.getBackend(device).kernels.attention(q, kv, kv, null, opts, out, lse);
        const o = out.toFloat32Array();
        const l = lse.toFloat32Array();
        for (let row = 0; row < H * T; row++) {
          const nan = row === 2;
          assert.equal(Number.isNaN(l[row]), nan, `lse row ${row}`);
          for (let c = 0; c < hd; c++) assert.equal(Number.isNaN(o[row * hd + c]), nan, `out row ${row} col ${c}`);
        }
        k.tidy(() => [q, kv, out, lse].forEach((t) => t.dispose()));
      });

      test('backward writes every element of dq, dk, dv (keys no query sees get 0)', () => {
        const dev = k.getBackend(device);
        // Tq = 4 queries at the end of Tk = 150 keys with a window of 3: keys 0..145 are invisible
        const [B, H, Hkv, Tq, Tk, hd] = [2, 4, 2, 4, 150, 16];
        const [q, kk, v] = [pair(device, [B, H, Tq, hd], 1), pair(device, [B, Hkv, Tk, hd], 2), pair(device, [B, Hkv, Tk, hd], 3)];
        const g = pair(device, [B, H, Tq, hd], 4);
        const opts = { scale: 0.25, causal: true, window: 3, softcap: 0, dropout: 0, seed: 0, counter: 0 };
        const out = k.empty([B, H, Tq, hd], 'float32', { backend: device });
        const lse = k.empty([B, H, Tq], 'float32', { backend: device });
        dev.kernels.attention(q.c, kk.c, v.c, null, opts, out, lse);
        const nan = (shape: number[]) => k.tensor(new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(NaN), { shape, backend: device });
        const [dq, dk, dv] = [nan([B, H, Tq, hd]), nan([B, Hkv, Tk, hd]), nan([B, Hkv, Tk, hd])];
        dev.kernels.attentionBackward(q.c, kk.c, v.c, null, out, lse, g.c, opts, dq, dk, dv);
        for (const [name, t] of [['dq', dq], ['dk', dk], ['dv', dv]] as const) {
          const a = t.toFloat32Array();
          assert.ok(a.every(Number.isFinite), `${name} has unwritten (NaN) elements`);
        }
        const dka = dk.toFloat32Array();
        for (let b = 0; b < B * Hkv; b++)
          for (let j = 0; j < Tk - Tq - 2; j++) assert.equal(dka[(b * Tk + j) * hd], 0, `dk of invisible key ${j}`);
        k.tidy(() => [out, lse, dq, dk, dv].forEach((t) => t.dispose()));
        dispose(q, kk, v, g);
      });

      test('bad arguments throw an Error naming the kernel, never crash', () => {
        const dev = k.getBackend(device);
        const f32 = (shape: number[]) => k.zeros(shape, { backend: device });
        const o = { scale: 1, causal: false, window: 0, softcap: 0, dropout: 0, seed: 0, counter: 0 };
        const [q, kv] = [f32([1, 2, 3, 4]), f32([1, 2, 5, 4])];
        const bad: [RegExp, () => void][] = [
          [/attention: lse/, () => dev.kernels.attention(q, kv, kv, null, o, f32([1, 2, 3, 4]), f32([1, 2, 4]))],
          [/attention: out/, () => dev.kernels.attention(q, kv, kv, null, o, f32([1, 2, 3, 5]), f32([1, 2, 3]))],
          [/attention: q and k head dims differ/, () => dev.kernels.attention(q, f32([1, 2, 5, 3]), kv, null, o, f32([1, 2, 3, 4]), f32([1, 2, 3]))],
          [/attention: query heads must be a multiple/, () => dev.kernels.attention(f32([1, 3, 3, 4]), kv, kv, null, o, f32([1, 3, 3, 4]), f32([1, 3, 3]))],
          [/attention: k and v must agree/, () => dev.kernels.attention(q, kv, f32([1, 2, 4, 4]), null, o, f32([1, 2, 3, 4]), f32([1, 2, 3]))],
          [/attention: mask/, () => dev.kernels.attention(q, kv, kv, f32([1, 1, 3, 4]), o, f32([1, 2, 3, 4]), f32([1, 2, 3]))],
          [/attention: q must be float32/, () => dev.kernels.attention(k.zeros([1, 2, 3, 4], { backend: device, dtype: 'float64' }), kv, kv, null, o, f32([1, 2, 3, 4]), f32([1, 2, 3]))],
          [/attention: k .* (must be contiguous|needs contiguous rows within each head)/, () => dev.kernels.attention(q, f32([1, 2, 4, 5]).transpose(2, 3), kv, null, o, f32([1, 2, 3, 4]), f32([1, 2, 3]))],
          [/attention: dropout must be in/, () => dev.kernels.attention(q, kv, kv, null, { ...o, dropout: 1 }, f32([1, 2, 3, 4]), f32([1, 2, 3]))],
          [/attention: window must be >= 0/, () => dev.kernels.attention(q, kv, kv, null, { ...o, window: -2 }, f32([1, 2, 3, 4]), f32([1, 2, 3]))],
          [/attention_backward: dk/, () => dev.kernels.attentionBackward(q, kv, kv, null, f32([1, 2, 3, 4]), f32([1, 2, 3]), f32([1, 2, 3, 4]), o, f32([1, 2, 3, 4]), f32([1, 2, 3, 4]), kv)],
          [/attention_backward: dout/, () => dev.kernels.attentionBackward(q, kv, kv, null, f32([1, 2, 3, 4]), f32([1, 2, 3]), f32([1, 2, 4, 4]), o, f32([1, 2, 3, 4]), kv, kv)],
        ];
        if (device === 'cuda')
          bad.push([/attention: head dims above 256/, () => dev.kernels.attention(f32([1, 1, 2, 300]), f32([1, 1, 2, 300]), f32([1, 1, 2, 300]), null, o, f32([1, 1, 2, 300]), f32([1, 1, 2]))]);
        for (const [re, f] of bad) assert.throws(f, re);
      });

      test('forward + backward memory is O(T): far below the composite at T = 512', () => {
        const T = 512;
        const peak = (f: typeof k.scaledDotProductAttention): number => {
          const [q, kk, v] = [pair(device, [1, 4, T, 32], 1).c, pair(device, [1, 2, T, 32], 2).c, pair(device, [1, 2, T, 32], 3).c];
          const g = pair(device, [1, 4, T, 32], 4, -1, 1, false).c;
          const base = k.memory.stats(device).current.total;
          k.memory.resetPeak();
          k.tidy(() => f(q, kk, v, { causal: true }).backward(g));
          const bytes = k.memory.stats(device).peak.total - base;
          for (const x of [q, kk, v, g]) {
            x.zeroGrad();
            x.dispose();
          }
          return bytes;
        };
        const fused = peak(k.scaledDotProductAttention);
        const scores = 4 * T * T * 4; // one [1, 4, T, T] float32 tensor
        // out, lse, dq, dk, dv (and on a GPU with few blocks, per-share partial dk/dv): all O(T)
        assert.ok(fused < scores / 2, `fused peak ${fused} B vs one score matrix ${scores} B`);
        const composite = peak(k.attentionComposite);
        assert.ok(composite >= scores, `composite peak ${composite} B holds a score matrix`);
        assert.ok(fused * 10 < composite, `fused ${fused} B vs composite ${composite} B`);
      });

      if (device === 'cpu')
        test('k, v as a KV cache prefix (heads maxLen rows apart) go in without a copy: the contiguous copy\'s result, bit for bit', () => {
          // the forward reads k and v at batch/head strides (Backend.attentionStridedKv); the values
          // and the summation order are those of the contiguous copy, so the outputs are identical
          for (const dtype of ['float32', 'bfloat16'] as const)
            for (const [B, H, Hkv, Tq, Tk, hd] of [[1, 9, 3, 1, 33, 64], [2, 4, 2, 7, 257, 16], [1, 2, 2, 1, 1, 8], [2, 6, 1, 5, 40, 8]])
              k.tidy(() => {
                const cacheK = pair(device, [B, Hkv, 300, hd], 5).c.to(dtype), cacheV = pair(device, [B, Hkv, 300, hd], 6).c.to(dtype);
                const q = pair(device, [B, H, Tq, hd], 7).c.to(dtype);
                const [kk, v] = [cacheK.narrow(2, 0, Tk), cacheV.narrow(2, 0, Tk)];
                assert.ok(!kk.isContiguous());
                const live = k.memory.stats(device).current.total;
                const got = k.noGrad(() => k.scaledDotProductAttention(q, kk, v, { causal: true }));
                // only out and lse were allocated (no copy of the [B, Hkv, Tk, hd] prefixes)
                assert.ok(k.memory.stats(device).current.total - live <= got.numel * 4 + B * H * Tq * 4 + 256, 'no k/v copies');
                const want = k.noGrad(() => k.scaledDotProductAttention(q, kk.contiguous(), v.contiguous(), { causal: true }));
                assert.deepEqual(got.toFloat32Array(), want.toFloat32Array(), `${dtype} [${B}, ${H}/${Hkv}, ${Tq}, ${Tk}, ${hd}]`);
                // with a gradient to take, the copies are made (the backward reads contiguous k, v) and dk reaches the cache prefix
                const kg = kk.detach().clone().requiresGrad_();
                k.scaledDotProductAttention(q, kg, v, { causal: true }).sum().backward();
                assert.deepEqual(kg.grad!.shape, [B, Hkv, Tk, hd]);
              });
        });

      if (device === 'cpu')
        for (const simd of ['avx2', 'scalar'])
          test(`groups under KESTREL_SIMD=${simd}, 1 and 2 threads (child process)`, () => {
            runChild(fileURLToPath(import.meta.url), { KESTREL_SIMD: simd, KESTREL_ATTN_CHILD: '1' });
          });
    });
}
