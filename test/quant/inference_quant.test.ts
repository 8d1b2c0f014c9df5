// Quantized inference (loadPretrained(dir, { quant })): every Linear of a decoder fixture, the head
// included (a tied head as a quantized copy of the embedding), stored as bf16, int8 or q4.
// 1. Wiring, exactly: the quantized model's logits equal those of the float model whose Linear
//    weights were replaced by the dequantized ones (the same float32 products; only summation order
//    differs: within 1e-4 of the largest logit).
// 2. The formats' error against the float model (transformers' golden prompt), as the relative RMS
//    of the logits, within the tolerance stated per format below.
// 3. A 40-token prefill through the layers' prefill marks (int8 activations on AVX2 for q4, bf16 where
//    the CPU multiplies it natively) close to the same model with float activations.
// 4. Decoding (M = 1 GEMV steps with a KV cache) picks the argmax of the quantized model's own full
//    forward at every step (the GEMV and the tiled prefill agree), and greedy ids equal the float
//    model's where the float top-2 margin exceeds twice the max logit error (there the argmax
//    cannot move).
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { skipUnless } from '../devices.js';
import { fixture } from '../fixtures.js';
import { assertClose } from '../helpers.js';

// Relative RMS error of the logits vs float32 (‖Δ‖₂ / ‖logits‖₂). Measured on these fixtures
// (2-layer random models, uniform weights): bf16 0.003-0.011, int8 0.009-0.046, q4 0.13-0.42. The
// bounds are about 2x: bf16 rounds each weight to 2^-9 relative, int8 to 1/254 of its row's absmax,
// q4 to 1/16 of its group's extreme, so q4 on random tiny models is coarse (real checkpoints,
// whose weights concentrate near zero, fare far better; kestrel quantize --calib reports it).
const RMS_TOL = { bf16: 0.025, int8: 0.1, q4: 0.85 } as const;
// The GEMV's logits against the tiles' for the same positions (relative RMS): int8 and q4 weights
// take int8 activations where the CPU has the integer path (quant_gemv_int8.cc), about 2x the
// measured 0.007-0.024; bf16 keeps float activations (float32 rounding only)
const GEMV_RMS_TOL = { bf16: 1e-4, int8: 0.05, q4: 0.05 } as const;
// A 40-token prefill's logits through the layers' prefill marks against float activations (relative
// RMS): q4's int8 activations (AVX2) measured 0.007-0.040 on these fixtures, int8's (bf16 where native,
// else float32) 0 here; about 2x
const PREFILL_RMS_TOL = { int8: 0.05, q4: 0.08 } as const;
const FIXTURES = ['llama', 'llama-tied-rope-llama3', 'qwen2'];
// 10 tokens: more than the GEMV's 8 rows, so the wiring check runs the tiles with float activations
// (the same float32 products as the dequantized model: its layers' bf16 prefill is switched off, that
// path is prefill_dtype.test.ts's); the GEMV is checked by quant_gemv*.test.ts
const WIRING_IDS = [1, 5, 9, 200, 3, 7, 11, 13, 17, 19];

const rmsRel = (got: k.Tensor, want: k.Tensor): number => k.tidy(() => {
  const d = got.sub(want);
  return Math.sqrt(d.mul(d).sum().item() / want.mul(want).sum().item());
});

/** Per position: the argmax and the gap between the best and second-best logit. */
function top2(logits: k.Tensor): { arg: number[]; margin: number[] } {
  const [T, V] = [logits.shape[logits.ndim - 2], logits.shape[logits.ndim - 1]];
  const a = logits.toFloat32Array();
  const arg: number[] = [];
  const margin: number[] = [];
  for (let t = 0; t < T; t++) {
    const row = Array.from(a.subarray(t * V, (t + 1) * V));
    const best = row.indexOf(Math.max(...row));
    arg.push(best);
    margin.push(row[best] - Math.max(...row.filter((_, i) => i !== best)));
  }
  return { arg, margin };
}

for (const name of FIXTURES) {
  const fx = fixture('models', name);
  describe(`quantized inference: ${name}`, { skip: fx.skip || skipUnless('cpu') }, () => {
    for (const quant of k.quant.INFERENCE_QUANTS)
      test(`${quant}: logits = the dequantized float model's, within ${RMS_TOL[quant]} RMS of float32, greedy decoding consistent`, async () => {
        const { model: ref } = await k.loadCausalLM(fx.path, { backend: 'cpu' });
        const { model } = await k.loadCausalLM(fx.path, { backend: 'cpu', quant });
        using g = new SafetensorsFile(join(fx.path, 'golden.safetensors'));
        const prompt = g.tensor('gen.prompt_ids', { backend: 'cpu' });
        const floatIds = g.tensor('gen.output_ids', { backend: 'cpu' }); // transformers' greedy continuation
        const lm = model as k.CausalLM;
        assert.ok(lm.lm_head instanceof k.quant.QuantLinear, 'the head is quantized (a tied one as a copy)');
        k.tidy(() => {
          const lf = ref.forward({ inputIds: floatIds }).logits!;
          const lq = lm.forward({ inputIds: floatIds }).logits!;
          const err = rmsRel(lq, lf);
          console.log(`# ${name} ${quant}: logits RMS error ${err.toExponential(2)} of float32`);
          assert.ok(err <= RMS_TOL[quant], `${name} ${quant}: RMS error ${err} > ${RMS_TOL[quant]}`);
          // teacher-forced greedy ids: where the float margin exceeds twice the max error they must agree
          const maxErr = lq.sub(lf).abs().max().item();
          const [f, q] = [top2(lf), top2(lq)];
          let checked = 0;
          f.margin.forEach((m, t) => {
            if (m <= 2 * maxErr) return;
            checked++;
            assert.equal(q.arg[t], f.arg[t], `${name} ${quant} position ${t}: margin ${m} > 2 x ${maxErr}`);
          });
          // q4's error on these random models exceeds every margin: no position is decidable (reported)
          if (quant !== 'q4') assert.ok(checked >= 4, `${name} ${quant}: only ${checked} positions decidable`);
          console.log(`# ${name} ${quant}: ${checked} of ${f.margin.length} positions have margin > 2 x max error ${maxErr.toExponential(2)}; their argmax agree`);
        });
        // decoding with the cache (GEMV steps) picks the argmax of the model's own full forward (the
        // tiles, float activations) each step where it leads by more than 4 E: E is the GEMV's logit
        // error, which int8 activations (int8/q4 weights, quant_gemv_int8.cc) raise from float32
        // rounding to ~1e-2, measured on the first 8 positions through the GEMV (8 rows) and the tiles
        const out = await k.generate(lm, prompt, { maxNewTokens: 12, temperature: 0, eosTokenId: [] });
        k.tidy(() => {
          const full = lm.forward({ inputIds: out }).logits!;
          const gemv = lm.forward({ inputIds: out.narrow(1, 0, 8) }).logits!;
          const gemvErr = gemv.sub(full.narrow(1, 0, 8)).abs().max().item();
          // int8 activations move these logits by 0.7-2.4% RMS (measured); float ones by float32 rounding
          const gemvRms = rmsRel(gemv, full.narrow(1, 0, 8));
          console.log(`# ${name} ${quant}: GEMV vs tiles logits RMS ${gemvRms.toExponential(2)}, max ${gemvErr.toExponential(2)}`);
          assert.ok(gemvRms <= GEMV_RMS_TOL[quant], `${name} ${quant}: GEMV logits RMS error ${gemvRms} > ${GEMV_RMS_TOL[quant]}`);
          const again = top2(full);
          const ids = out.toArray() as number[][];
          for (let t = prompt.shape[1]; t < ids[0].length; t++)
            if (again.margin[t - 1] > Math.max(1e-4, 4 * gemvErr)) assert.equal(ids[0][t], again.arg[t - 1], `${name} ${quant}: decoded token ${t} (GEMV error ${gemvErr})`);
        });
        for (const t of [out, prompt, floatIds]) t.dispose();
        ref.dispose();
        model.dispose();
      });

    test('wiring: the quantized model equals the float model with dequantized weights (1e-4 of the largest logit)', async () => {
      for (const quant of k.quant.INFERENCE_QUANTS) {
        const { model: deq } = await k.loadCausalLM(fx.path, { backend: 'cpu' });
        const { model } = await k.loadCausalLM(fx.path, { backend: 'cpu', quant });
        const lm = model as k.CausalLM;
        const d = deq as k.CausalLM;
        for (const [, m] of lm.namedModules()) if (m instanceof k.quant.QuantLinear) m.prefillDtype = null;
        // copy every dequantized weight into the float model (a tied head cannot be: skip those fixtures' head)
        const tied = !d.lm_head;
        const sd: Record<string, k.Tensor> = {};
        for (const [path, m] of lm.namedModules())
          if (m instanceof k.quant.QuantLinear && !(tied && path === 'lm_head')) sd[`${path}.weight`] = m.dequantize();
        d.loadStateDict(sd, { strict: false });
        for (const t of Object.values(sd)) t.dispose();
        if (tied) {
          k.tidy(() => {
            // compare the final hidden state instead, and the head against its dequantized weight
            const ids = k.tensor([WIRING_IDS], { dtype: 'int64', backend: 'cpu' });
            const [hq, hd] = [lm.model.forward({ inputIds: ids }).hidden, d.model.forward({ inputIds: ids }).hidden];
            assertClose(hq, hd, { atol: 1e-4 * hd.abs().max().item(), rtol: 0, what: `${name} ${quant} hidden` });
            const head = lm.lm_head as unknown as k.quant.QuantLinear;
            const want = k.matmul(hq, head.dequantize().t());
            assertClose(head.forward(hq), want, { atol: 1e-4 * want.abs().max().item(), rtol: 0, what: `${name} ${quant} head` });
          });
        } else
          k.tidy(() => {
            const ids = k.tensor([WIRING_IDS], { dtype: 'int64', backend: 'cpu' });
            const want = d.forward({ inputIds: ids }).logits!;
            assertClose(lm.forward({ inputIds: ids }).logits!, want, { atol: 1e-4 * want.abs().max().item(), rtol: 0, what: `${name} ${quant} logits` });
          });
        deq.dispose();
        model.dispose();
      }
    });

    test(`a prefill of 40 tokens in the layers' prefill dtype (int8 activations, or bf16 where native) stays within ${JSON.stringify(PREFILL_RMS_TOL)} RMS of float activations`, async () => {
      for (const quant of ['int8', 'q4'] as const) {
        const { model } = await k.loadCausalLM(fx.path, { backend: 'cpu', quant });
        const lm = model as k.CausalLM;
        const layers = lm.namedModules().map(([, m]) => m).filter((m): m is k.quant.QuantLinear => m instanceof k.quant.QuantLinear);
        assert.ok(layers.length > 0 && layers.every((l) => l.prefillDtype !== null), 'loadCausalLM({ quant }) marks every layer for prefill');
        // 40 rows: past the 32 from which a marked layer takes its prefill dtype; under noGrad, as generation runs
        const ids = k.tensor([Array.from({ length: 40 }, (_, i) => WIRING_IDS[i % WIRING_IDS.length] + i)], { dtype: 'int64', backend: 'cpu' });
        const logits = (): k.Tensor => k.noGrad(() => lm.forward({ inputIds: ids }).logits!);
        const marked = logits();
        for (const l of layers) l.prefillDtype = null;
        const float = logits();
        const err = rmsRel(marked, float);
        console.log(`# ${name} ${quant}: the marked prefill's logits ${err.toFixed(4)} RMS from float activations`);
        assert.ok(err <= PREFILL_RMS_TOL[quant], `${name} ${quant}: prefill logits ${err.toFixed(4)} RMS from float activations (tolerance ${PREFILL_RMS_TOL[quant]})`);
        for (const t of [ids, marked, float]) t.dispose();
        model.dispose();
      }
    });
  });
}

const llama = fixture('models', 'llama');
describe('quantized inference: bad options', { skip: llama.skip || skipUnless('cpu') }, () => {
  test('an unknown quant is named', async () => {
    const fx = llama;
    await assert.rejects(k.loadPretrained(fx.path, { backend: 'cpu', quant: 'int4' as 'q4' }), /loadPretrained: quant must be one of bf16, int8, q4, got "int4"/);
  });
});
