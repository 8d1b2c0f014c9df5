// bfloat16 attention on the CPU (native/attention.cc with bf16 q, k, v): the tile products QKᵀ and PV
// and backward's five run on the half GEMM (AMX tiles, vdpbf16ps, or widened while loading) with
// float32 accumulation and a float32 softmax. Forward and gradients are checked against the float64
// composite (materialised softmax) of the same bf16 values on the reference backend, on odd shapes
// (T 1, 7, 33, 257; head dims 4, 7, 16, 33, 64), GQA, causal, sliding window, a key padding mask and
// Tq < Tk, under every half GEMM path the CPU has (KESTREL_BF16_GEMM, read per call) and both backward
// task shapes (a one-position forward without dropout, the Tq 1 case, takes the decode loop instead,
// which widens the bf16 rows it reads: test/infer/kv_cache_dtype.test.ts); KESTREL_SIMD=avx2 (a child
// process) checks the widened path CPUs without bf16 take.
// Tolerance "within bf16 rounding": the results are rounded to bf16 once (2^-8 relative), and the
// probabilities / dS are rounded to bf16 before their products (2^-9 relative each, summed in float32),
// so |got - want| <= 2^-7 (|want| + max |want|) is a few bf16 ulps of the tensor's scale.
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';
import { attentionComposite } from '../../src/ops/attention.js';
import { loadNative } from '../../src/backend/addon.js';
import { assertClose, hasCpu, runChild, seededTensor, withEnv } from '../helpers.js';
import { type Case as KernelCase, compare } from '../backend/attention_cases.js';

const skip = hasCpu() ? false : 'native addon not built';

interface Case { B: number; H: number; Hkv: number; Tq: number; Tk: number; hd: number; causal?: boolean; window?: number; padded?: boolean }
const CASES: Case[] = [
  { B: 1, H: 1, Hkv: 1, Tq: 1, Tk: 1, hd: 4 },
  { B: 1, H: 2, Hkv: 2, Tq: 7, Tk: 7, hd: 7 },
  { B: 2, H: 4, Hkv: 2, Tq: 33, Tk: 33, hd: 16, causal: true },
  { B: 1, H: 2, Hkv: 1, Tq: 257, Tk: 257, hd: 64, causal: true, window: 40 },
  { B: 2, H: 2, Hkv: 2, Tq: 33, Tk: 33, hd: 33, padded: true },
  { B: 1, H: 4, Hkv: 1, Tq: 7, Tk: 33, hd: 16, causal: true },
];
const name = (c: Case): string =>
  `B${c.B} H${c.H}/${c.Hkv} Tq${c.Tq} Tk${c.Tk} hd${c.hd}${c.causal ? ' causal' : ''}${c.window ? ` window ${c.window}` : ''}${c.padded ? ' key padding' : ''}`;

/** bool [B, 1, 1, Tk]: row b attends its first Tk - 5b keys (BERT's padding mask, broadcast over heads and queries). */
function keyPadding(c: Case, backend: k.BackendName): k.Tensor {
  const keep = Array.from({ length: c.B * c.Tk }, (_, i) => (i % c.Tk) < c.Tk - 5 * Math.floor(i / c.Tk));
  return k.tensor(keep, { dtype: 'bool', shape: [c.B, 1, 1, c.Tk], backend });
}

/** |got - want| <= 2^-7 (|want| + max |want|) elementwise (see the file comment). */
function closeBf16(got: k.Tensor, want: k.Tensor, what: string): void {
  const w = want.toTypedArray() as Float64Array;
  const scale = w.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
  assertClose(got, want, { atol: 2 ** -7 * scale, rtol: 2 ** -7, what });
}

/** The fused bf16 attention's output and gradients against the float64 composite of the same bf16 values. */
function check(c: Case, label: string): void {
  k.tidy(() => {
    const leaf = (shape: number[], seed: number): k.Tensor => seededTensor(shape, 'bfloat16', 'cpu', seed, -2, 2).requiresGrad_();
    const [q, kk, v] = [leaf([c.B, c.H, c.Tq, c.hd], 1), leaf([c.B, c.Hkv, c.Tk, c.hd], 2), leaf([c.B, c.Hkv, c.Tk, c.hd], 3)];
    const g = seededTensor([c.B, c.H, c.Tq, c.hd], 'bfloat16', 'cpu', 4);
    const opts = { causal: c.causal, window: c.window };
    const out = k.scaledDotProductAttention(q, kk, v, { ...opts, mask: c.padded ? keyPadding(c, 'cpu') : null });
    assert.equal(out.dtype, 'bfloat16');
    out.backward(g);
    const wide = (t: k.Tensor): k.Tensor => k.noGrad(() => t.to('ref').to('float64')).requiresGrad_();
    const [q64, k64, v64] = [q, kk, v].map(wide);
    const want = attentionComposite(q64, k64, v64, { ...opts, mask: c.padded ? keyPadding(c, 'ref') : null });
    want.backward(wide(g));
    const what = `${name(c)} ${label}`;
    closeBf16(out, want, `${what} out`);
    closeBf16(q.grad!, q64.grad!, `${what} dq`);
    closeBf16(kk.grad!, k64.grad!, `${what} dk`);
    closeBf16(v.grad!, v64.grad!, `${what} dv`);
  });
}

/** The half GEMM paths this CPU has (convert always; the others by feature). */
function paths(): string[] {
  const f = loadNative()?.info();
  return ['convert', ...(f?.avx512bf16 ? ['avx512bf16'] : []), ...(f?.amxBf16 ? ['amx'] : [])];
}

if (process.env.KESTREL_ATTN_BF16_CHILD) {
  // child mode (KESTREL_SIMD set by the parent): every case once, then a line the parent looks for
  for (const c of CASES) check(c, `KESTREL_SIMD=${process.env.KESTREL_SIMD}`);
  console.log(`ok ${JSON.stringify(loadNative()?.info())}`);
} else {
  describe('bfloat16 attention = float64 composite within bf16 rounding', { skip }, () => {
    for (const path of hasCpu() ? paths() : [])
      for (const mode of ['split', 'grouped'])
        test(`KESTREL_BF16_GEMM=${path}, ${mode} backward`, () => {
          withEnv('KESTREL_BF16_GEMM', path, () => withEnv('KESTREL_ATTN_BACKWARD', mode, () => {
            for (const c of CASES) check(c, `${path} ${mode}`);
          }));
        });

    // the cuda half kernels' shared cases (test/backend/attention_cases.ts) and their bf16 tolerance
    // (a few last places on values of order 1): every mask kind, soft-capping, dropout (the reference
    // draws the same Philox mask), rows with no visible key, strided q/k/v views
    const more: KernelCase[] = [
      { Tq: 33, hd: 64, mask: 'pad', causal: true }, { Tq: 7, hd: 64, mask: 'full' }, { Tq: 9, Tk: 20, hd: 128, mask: 'fullT', causal: true },
      { Tq: 33, Tk: 70, hd: 64, mask: 'head', H: 4, Hkv: 2 }, { Tq: 33, hd: 64, mask: 'bool', causal: true },
      { Tq: 33, hd: 64, softcap: 0.5, scale: 1 }, { Tq: 33, hd: 64, dropout: 0.2 }, { Tq: 7, Tk: 33, hd: 128, dropout: 0.1, mask: 'full' },
      { Tq: 33, Tk: 7, hd: 64, causal: true }, { Tq: 33, hd: 64, strided: true, causal: true },
    ];
    test('masks, soft-capping, dropout, empty rows, strided views (the shared attention cases)', () => {
      for (const c of more) compare('cpu', c, { atol: 2e-2, rtol: 2e-2 }, 'bfloat16');
    });

    test('KESTREL_SIMD=avx2 (child process): bf16 widened to float32 where the CPU lacks bf16 dot products', () => {
      const out = runChild(fileURLToPath(import.meta.url), { KESTREL_SIMD: 'avx2', KESTREL_ATTN_BF16_CHILD: '1' }, 120_000);
      assert.match(out, /^ok .*"avx512bf16":false/m);
    });

    test('under k.autocast(bfloat16), float32 q, k, v run as bf16 and the gradients come back float32', () => {
      k.tidy(() => {
        const f32 = (seed: number): k.Tensor => seededTensor([1, 2, 7, 8], 'float32', 'cpu', seed).requiresGrad_();
        const [q, kk, v] = [f32(5), f32(6), f32(7)];
        const out = k.autocast('bfloat16', () => k.scaledDotProductAttention(q, kk, v));
        assert.equal(out.dtype, 'bfloat16');
        out.sum().backward();
        assert.deepEqual([q.grad!.dtype, kk.grad!.dtype, v.grad!.dtype], ['float32', 'float32', 'float32']);
        const want = k.scaledDotProductAttention(q.to('bfloat16'), kk.to('bfloat16'), v.to('bfloat16'));
        assertClose(out, want, { atol: 0, rtol: 0, what: 'autocast = explicit bf16 casts' });
      });
    });

    test('KESTREL_BF16_GEMM naming an unknown path is an error from the attention kernel', () => {
      k.tidy(() => {
        const t = seededTensor([1, 1, 3, 4], 'bfloat16', 'cpu', 1);
        assert.throws(() => withEnv('KESTREL_BF16_GEMM', 'fast', () => k.scaledDotProductAttention(t, t, t)), /attention.*KESTREL_BF16_GEMM=fast: expected amx, avx512bf16, convert/);
      });
    });
  });
}
