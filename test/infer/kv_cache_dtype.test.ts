// A KV cache kept in bfloat16 for float32 decoding (GenerateOptions.kvCacheDtype, --kv-dtype bf16).
// The decode step's attention reads the bf16 rows itself (native/attention_tiles.inc's forward_one,
// widening in registers) where it used to widen the whole cache into a float32 copy: widening is
// exact, so the kernel's float32 output must equal its output on the widened operands bit for bit,
// on one query position over 1, 7, 33, 257 and 600 keys (the last splits the keys across threads),
// GQA, head dims 64 / 7 / 33 (vector tails), a cache's narrowed prefix (heads maxLen rows apart), a
// window, soft-capping and an additive mask; at this CPU's SIMD level and, in child processes, at
// AVX2's and the scalar one. The model keeps a bf16 cache and its logits stay within bf16's rounding
// of the float32 cache's; a CPU-graph replay of such a step equals the step op by op.
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { samplingFlags } from '../../src/cli/model_args.js';
import { CpuGraphDecoder } from '../../src/infer/cpu_graph_decode.js';
import { skipUnless } from '../devices.js';
import { fixture } from '../fixtures.js';
import { runChild, seededTensor, withEnv } from '../helpers.js';

const skip = skipUnless('cpu');

/**
 * The decode kernel on bf16 q and a cache's bf16 rows against the same kernel on their float32
 * widening (exact), writing float32 out: equal bit for bit (the loop's arithmetic is the same, only
 * the loads differ). Calls the backend's kernel itself, so the outputs compared are unrounded.
 */
function checkDecodeRows(label: string): void {
  const cases = [
    ...[1, 7, 33, 257].map((Tk) => ({ H: 9, Hkv: 3, hd: 64, Tk })),
    { H: 4, Hkv: 1, hd: 64, Tk: 600 }, // one group: the keys split into parts merged after
    { H: 2, Hkv: 2, hd: 7, Tk: 33 },
    { H: 6, Hkv: 2, hd: 33, Tk: 257 },
  ];
  const cpu = k.getBackend('cpu');
  for (const c of cases) {
    for (const opts of [{ window: 0, softcap: 0, mask: false }, { window: 9, softcap: 30, mask: false }, { window: 0, softcap: 0, mask: true }]) {
      k.tidy(() => {
        const maxLen = c.Tk + 5; // the cache's buffer: its heads maxLen rows apart, the keys a narrowed prefix
        const q = seededTensor([1, c.H, 1, c.hd], 'float32', 'cpu', 1).to('bfloat16');
        const kc = seededTensor([1, c.Hkv, maxLen, c.hd], 'float32', 'cpu', 2).to('bfloat16');
        const vc = seededTensor([1, c.Hkv, maxLen, c.hd], 'float32', 'cpu', 3).to('bfloat16');
        const mask = opts.mask ? k.tensor(Float32Array.from({ length: c.Tk }, (_, j) => (j % 5 === 2 ? -Infinity : -0.25 * (j % 3))), { shape: [1, 1, 1, c.Tk] }) : null;
        const o = { scale: 0.125, causal: false, window: opts.window, softcap: opts.softcap, dropout: 0, seed: 0, counter: 0 };
        const run = (qq: k.Tensor, keys: k.Tensor, values: k.Tensor): Float32Array => {
          const out = k.empty([1, c.H, 1, c.hd], 'float32');
          cpu.kernels.attention(qq, keys.narrow(2, 0, c.Tk), values.narrow(2, 0, c.Tk), mask, o, out, k.empty([1, c.H, 1], 'float32'));
          return out.toFloat32Array() as Float32Array;
        };
        const got = run(q, kc, vc);
        const want = run(q.to('float32'), kc.to('float32'), vc.to('float32'));
        const what = `${label} H=${c.H} Hkv=${c.Hkv} hd=${c.hd} Tk=${c.Tk} ${JSON.stringify(opts)}`;
        assert.ok(got.every((x, i) => Object.is(x, want[i])), `${what}: outputs differ`);
        assert.ok(got.some((x) => x !== 0), `${what}: all zero`);
      });
    }
  }
}

if (process.env.KESTREL_KV_BF16_CHILD) {
  // child mode (KESTREL_SIMD set by the parent): the kernel check at that level, then a line the parent looks for
  checkDecodeRows(`KESTREL_SIMD=${process.env.KESTREL_SIMD}`);
  console.log('ok');
} else {
  test('decode attention over bf16 rows equals the float32 kernel on the widened rows, bit for bit', { skip }, () => checkDecodeRows('this CPU'));

  // the lower SIMD levels' bf16 loads (AVX2's and the scalar widening), in child processes
  for (const level of ['avx2', 'scalar'])
    test(`the same with KESTREL_SIMD=${level} (child process)`, { skip }, () => {
      assert.match(runChild(fileURLToPath(import.meta.url), { KESTREL_SIMD: level, KESTREL_KV_BF16_CHILD: '1' }), /^ok$/m);
    });

  test('a bf16 KV cache: the model attends in bf16, its logits within bf16 rounding of the float32 cache\'s', { skip }, async () => {
    const { model } = await k.loadCausalLM(fixture('models', 'llama').path);
    const lm = model as k.CausalLM;
    const c = lm.config;
    const tokens = [3, 17, 42, 7, 99, 5, 64, 12];
    const run = (dtype: 'float32' | 'bfloat16'): { logits: Float32Array[]; cacheDtype: string } => k.noGrad(() => {
      const cache = new k.KVCache(c.numLayers, 1, c.numKvHeads, 16, c.headDim, { dtype });
      const logits: Float32Array[] = [];
      // the prompt's first 5 tokens at once, then one token per step (teacher forced: the same inputs for both caches)
      for (const [start, n] of [[0, 5], [5, 1], [6, 1], [7, 1]]) {
        const ids = k.tensor([tokens.slice(start, start + n)], { dtype: 'int64' });
        const out = lm.forward({ inputIds: ids, cache }); // advances the cache by n
        logits.push(out.logits!.select(1, n - 1).toFloat32Array() as Float32Array);
        ids.dispose();
        out.logits!.dispose();
      }
      const cacheDtype = cache.keys[0]!.dtype;
      cache.dispose();
      return { logits, cacheDtype };
    });
    const [f32, b16] = [run('float32'), run('bfloat16')];
    assert.equal(f32.cacheDtype, 'float32');
    assert.equal(b16.cacheDtype, 'bfloat16');
    f32.logits.forEach((want, step) => {
      const got = b16.logits[step];
      const scale = Math.max(...Array.from(want, Math.abs));
      const err = Math.max(...Array.from(want, (x, i) => Math.abs(x - got[i])));
      // keys, values and queries rounded to 8 significant bits (2^-9 relative) before attention: a
      // few of those on the logits' scale
      assert.ok(err <= 1e-2 * scale, `step ${step}: max |logit difference| ${err} against a scale of ${scale}`);
      assert.ok(err > 0, `step ${step}: the bf16 cache changed nothing (was it used?)`);
    });
    lm.dispose();
  });

  test('generate with kvCacheDtype bfloat16: the CPU graph\'s replay equals the steps op by op, over a bf16 cache', { skip }, async () => {
    const { model } = await k.loadCausalLM(fixture('models', 'llama').path);
    const run = (graphs: boolean) => withEnv('KESTREL_CPU_GRAPHS', graphs ? '1' : '0', async () => {
      const scores: Float32Array[] = [];
      const ids = k.tensor([[3, 17, 42, 7, 99]], { dtype: 'int64' });
      const out = await model.generate(ids, { maxNewTokens: 12, temperature: 0, eosTokenId: [], kvCacheDtype: 'bfloat16', onScores: (_, s) => scores.push(s[0].slice()) });
      const result = { ids: out.toArray() as number[][], scores };
      ids.dispose();
      out.dispose();
      return result;
    });
    const built = CpuGraphDecoder.built;
    const [graph, eager] = [await run(true), await run(false)];
    assert.ok(CpuGraphDecoder.built > built, 'the graph was built');
    assert.deepEqual(graph.ids, eager.ids);
    graph.scores.forEach((s, i) => assert.ok(s.every((x, j) => Object.is(x, eager.scores[i][j])), `step ${i} scores differ`));
    // the kept decoder's cache is bf16; a float32 generation after it gets its own
    const kept = () => (model as k.CausalLM).attached<CpuGraphDecoder>('cpu-graph-decoder');
    assert.equal(kept()?.cache.keys[0]?.dtype, 'bfloat16');
    const ids = k.tensor([[3, 17, 42]], { dtype: 'int64' });
    (await model.generate(ids, { maxNewTokens: 4, temperature: 0, eosTokenId: [] })).dispose();
    assert.equal(kept()?.cache.keys[0]?.dtype, 'float32');
    await assert.rejects(model.generate(ids, { maxNewTokens: 2, kvCacheDtype: 'int8' as 'float32' }), /kvCacheDtype must be one of float32, bfloat16, got int8/);
    ids.dispose();
    model.dispose();
  });

  test('--kv-dtype names the cache dtype', () => {
    assert.equal(samplingFlags({ 'kv-dtype': 'bf16' }).kvCacheDtype, 'bfloat16');
    assert.equal(samplingFlags({ 'kv-dtype': 'fp32' }).kvCacheDtype, 'float32');
    assert.equal(samplingFlags({}).kvCacheDtype, undefined);
    assert.throws(() => samplingFlags({ 'kv-dtype': 'fp8' }), /--kv-dtype: expected fp32 or bf16, got 'fp8'/);
  });
}
