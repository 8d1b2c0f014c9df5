// bitsandbytes checkpoints: hand-built 4-bit (plain and double-quantized) and 8-bit folders in the
// documented layout load into quantized layers whose weights equal the hand-worked values; a quantized
// llama saved and reloaded gives bit-identical logits and keeps only packed bytes resident; malformed
// folders fail with errors naming the field or tensor.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { buildModel } from '../../src/models/registry.js';
import { assertClose } from '../helpers.js';
import { fixture } from '../fixtures.js';

/** A one-layer llama: D 8, F 16, 2 heads of 4, 1 kv head, vocab 16. */
const TINY = {
  model_type: 'llama', architectures: ['LlamaForCausalLM'], hidden_size: 8, intermediate_size: 16, num_attention_heads: 2,
  num_key_value_heads: 1, num_hidden_layers: 1, vocab_size: 16, rms_norm_eps: 1e-5, max_position_embeddings: 32,
  rope_theta: 10000, hidden_act: 'silu', tie_word_embeddings: false, torch_dtype: 'float32',
};
const BNB4 = {
  quant_method: 'bitsandbytes', load_in_4bit: true, load_in_8bit: false, bnb_4bit_quant_type: 'nf4', bnb_4bit_use_double_quant: false,
  bnb_4bit_compute_dtype: 'bfloat16', bnb_4bit_quant_storage: 'uint8', llm_int8_skip_modules: ['lm_head'], llm_int8_threshold: 6.0,
};
const PATHS = ['q_proj', 'k_proj', 'v_proj', 'o_proj'].map((p) => `model.layers.0.self_attn.${p}`)
  .concat(['gate_proj', 'up_proj', 'down_proj'].map((p) => `model.layers.0.mlp.${p}`));
const BLOCK = 32;

// Codes cycle through NF4 entries 15, 0, 7, 12, which are +1, -1, 0 and 0.44070982933044434 (the
// QLoRA paper's table); block scales cycle through 0.5, 1, 2, so every product is exact in float32.
const CODES = [15, 0, 7, 12];
const VALUES = [1, -1, 0, Math.fround(0.44070982933044434)];
const SCALES = [0.5, 1, 2];
const codeAt = (i: number, layer: number): number => (i + layer) % 4;
const scaleAt = (b: number, layer: number): number => SCALES[(b + layer) % 3];

function floatState(seed: number): Record<string, k.Tensor> {
  k.manualSeed(seed);
  return buildModel(TINY, 'tiny').stateDict();
}

function writeFolder(config: object, tensors: Record<string, k.Tensor>): string {
  const dir = mkdtempSync(join(tmpdir(), 'kestrel-bnb-'));
  mkdirSync(dir, { recursive: true });
  k.saveSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  return dir;
}

const bytesOf = (json: object): k.Tensor => k.tensor(new TextEncoder().encode(JSON.stringify(json)), { dtype: 'uint8' });
const shapeOf = (sd: Record<string, k.Tensor>, path: string): [number, number] => sd[`${path}.weight`].shape as [number, number];

/** The hand-chosen 4-bit layout of layer `li` and the weight it stands for. */
function fourBit(path: string, li: number, shape: [number, number], opts: { nested?: boolean } = {}): { tensors: Record<string, k.Tensor>; weight: Float32Array } {
  const n = shape[0] * shape[1];
  const blocks = Math.ceil(n / BLOCK);
  const packed = new Uint8Array(Math.ceil(n / 2));
  const weight = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const c = codeAt(i, li);
    packed[i >> 1] |= i % 2 === 0 ? CODES[c] << 4 : CODES[c];
    weight[i] = VALUES[c] * scaleAt(Math.floor(i / BLOCK), li);
  }
  const w = `${path}.weight`;
  const state: Record<string, unknown> = { quant_type: 'nf4', blocksize: BLOCK, dtype: 'bfloat16', shape };
  const tensors: Record<string, k.Tensor> = {
    [w]: k.tensor(packed, { dtype: 'uint8', shape: [n / 2, 1] }),
    [`${w}.quant_map`]: k.tensor(k.quant.NF4_CODE.slice()),
  };
  const scales = Float32Array.from({ length: blocks }, (_, b) => scaleAt(b, li));
  if (!opts.nested) tensors[`${w}.absmax`] = k.tensor(scales);
  else {
    // Double quantization with a hand-made code book map[j] = (j - 128) / 128, nested blocks of 2
    // scales with absmax 2, 4, 8, ... and offset 1: scale = map[j] * A + 1, so j = 128 + 128 (scale - 1) / A.
    const nestedAbsmax = Float32Array.from({ length: Math.ceil(blocks / 2) }, (_, q) => 2 ** (q + 1));
    const codes = Uint8Array.from(scales, (s, b) => 128 + (128 * (s - 1)) / nestedAbsmax[Math.floor(b / 2)]);
    tensors[`${w}.absmax`] = k.tensor(codes, { dtype: 'uint8' });
    tensors[`${w}.nested_absmax`] = k.tensor(nestedAbsmax);
    tensors[`${w}.nested_quant_map`] = k.tensor(Float32Array.from({ length: 256 }, (_, j) => (j - 128) / 128));
    Object.assign(state, { nested_blocksize: 2, nested_dtype: 'float32', nested_offset: 1 });
  }
  tensors[`${w}.quant_state.bitsandbytes__nf4`] = bytesOf(state);
  return { tensors, weight };
}

/** A tiny 4-bit folder; returns it with the expected dequantized weights and the float state dict. */
function fourBitFolder(opts: { nested?: boolean; config?: object; edit?: (t: Record<string, k.Tensor>) => void } = {}) {
  const sd = floatState(7);
  const tensors: Record<string, k.Tensor> = { ...sd };
  const weights = new Map<string, Float32Array>();
  PATHS.forEach((p, li) => {
    const q = fourBit(p, li, shapeOf(sd, p), opts);
    delete tensors[`${p}.weight`];
    Object.assign(tensors, q.tensors);
    weights.set(p, q.weight);
  });
  opts.edit?.(tensors);
  return { dir: writeFolder({ ...TINY, quantization_config: opts.config ?? BNB4 }, tensors), weights, sd };
}

const layer = (model: k.nn.Module, path: string): k.nn.Module => new Map(model.namedModules()).get(path)!;

/** The float model with the given weights: what the quantized checkpoint stands for. */
async function floatTwin(sd: Record<string, k.Tensor>, weights: Map<string, Float32Array>): Promise<k.CausalLM> {
  const tensors = { ...sd };
  for (const [p, w] of weights) tensors[`${p}.weight`] = k.tensor(w, { shape: [...sd[`${p}.weight`].shape] });
  return (await k.loadCausalLM(writeFolder(TINY, tensors))).model as k.CausalLM;
}

const IDS = k.tensor([[1, 5, 9, 3, 14, 2]], { dtype: 'int64' });
const logits = (m: k.LanguageModel | k.CausalLM): k.Tensor => k.noGrad(() => (m as k.CausalLM).forward({ inputIds: IDS }).logits!);

for (const nested of [false, true])
  test(`4-bit nf4${nested ? ' with double quantization' : ''}: every layer loads packed and dequantizes to the hand-worked weight`, async () => {
    const { dir, weights, sd } = fourBitFolder({ nested });
    const { model } = await k.loadCausalLM(dir);
    for (const [p, w] of weights) {
      const l = layer(model, p);
      assert.ok(l instanceof k.quant.QuantLinear, `${p} is a QuantLinear`);
      assertClose(l.dequantize(), w, { atol: 0, rtol: 0, what: p });
    }
    // k_proj [4, 8] (layer 1): codes 0, 7, 12, 15, ... in block 0 with scale 1 -> -1, 0, 0.4407..., 1
    assert.deepEqual([...(layer(model, PATHS[1]) as k.quant.QuantLinear).dequantize().toFloat32Array().slice(0, 4)], [-1, 0, VALUES[3], 1]);
    assert.ok(layer(model, 'lm_head') instanceof k.nn.Linear, 'lm_head (stored in float) stays a float Linear');
    const twin = await floatTwin(sd, weights);
    assertClose(logits(model), logits(twin), { atol: 1e-5, rtol: 1e-5, what: 'logits vs the float model of the same weights' });
  });

test('8-bit (LLM.int8 SCB, threshold 6): weight-only int8 equals q · SCB / 127', async () => {
  const sd = floatState(8);
  const tensors: Record<string, k.Tensor> = { ...sd };
  const weights = new Map<string, Float32Array>();
  for (const p of PATHS) {
    const [out, inF] = shapeOf(sd, p);
    // q spans -127..127; SCB[o] = 127 · 2^(o mod 3 - 1), so W[o, i] = q · 2^(o mod 3 - 1) exactly
    const q = Int8Array.from({ length: out * inF }, (_, i) => ((i * 37) % 255) - 127);
    const scb = Float32Array.from({ length: out }, (_, o) => 127 * 2 ** ((o % 3) - 1));
    weights.set(p, Float32Array.from(q, (v, i) => v * 2 ** ((Math.floor(i / inF) % 3) - 1)));
    tensors[`${p}.weight`] = k.tensor(q, { dtype: 'int8', shape: [out, inF] });
    tensors[`${p}.SCB`] = k.tensor(scb);
    tensors[`${p}.weight_format`] = k.tensor(new Uint8Array([0]), { dtype: 'uint8', shape: [] });
  }
  const config = { ...BNB4, load_in_4bit: false, load_in_8bit: true, llm_int8_threshold: 6.0 };
  const { model } = await k.loadCausalLM(writeFolder({ ...TINY, quantization_config: config }, tensors));
  for (const [p, w] of weights) {
    const l = layer(model, p);
    assert.ok(l instanceof k.quant.QuantLinear && l.type === 'int8', `${p} is an int8 QuantLinear`);
    assertClose(l.dequantize(), w, { atol: 0, rtol: 0, what: p });
  }
  // the claim is about the weights: activations stay float32 here (the decode GEMV would otherwise
  // quantize them to int8 per block of 32, tested against its own bound in quant_gemv_int8.test.ts)
  process.env.KESTREL_QUANT_GEMV = 'float';
  try {
    assertClose(logits(model), logits(await floatTwin(sd, weights)), { atol: 1e-5, rtol: 1e-5, what: 'logits' });
  } finally {
    delete process.env.KESTREL_QUANT_GEMV;
  }

  const saved = join(mkdtempSync(join(tmpdir(), 'kestrel-bnb-')), 'int8');
  k.savePretrained(saved, { model, hfConfig: TINY });
  const f = new k.SafetensorsFile(join(saved, 'model.safetensors'));
  assert.deepEqual([f.info(`${PATHS[0]}.weight`).fileDtype, f.info(`${PATHS[0]}.SCB`).fileDtype, f.info(`${PATHS[0]}.weight_format`).fileDtype], ['I8', 'F32', 'U8']);
  f.close();
  const re = await k.loadCausalLM(saved);
  for (const [p, w] of weights) assertClose((layer(re.model, p) as k.quant.QuantLinear).dequantize(), w, { atol: 0, rtol: 0, what: `${p} after save and reload` });

  tensors[`${PATHS[0]}.weight_format`] = k.tensor(new Uint8Array([2]), { dtype: 'uint8', shape: [] });
  await assert.rejects(k.loadCausalLM(writeFolder({ ...TINY, quantization_config: config }, tensors)), /q_proj\.weight_format' is 2, a GPU tile layout/);
});

const llama = fixture('models', 'llama');
test('a quantized llama saved and reloaded: bit-identical logits, packed bytes resident', { skip: llama.skip }, async () => {
  const paramBytes = (): number => k.memory.stats().current.param;
  const base = paramBytes();
  const { model, hfConfig } = await k.loadCausalLM(llama.path);
  const floatBytes = paramBytes() - base;
  const linears = model.namedModules().filter(([p, m]) => m instanceof k.nn.Linear && p !== 'lm_head').map(([p, m]) => [p, m as k.nn.Linear] as const);
  // attention in nf4 with double quantization, the MLP in fp4 with plain float32 scales
  k.quant.quantizeModel(model, { type: 'nf4', doubleQuant: true, skip: ['gate_proj', 'up_proj', 'down_proj'] });
  k.quant.quantizeModel(model, { type: 'fp4' });
  // resident bytes per layer: half a byte per value, the 16-entry code table, and per block of 64 either a
  // float32 scale or (double quant) a uint8 code plus a float32 per 256 codes and the 256-entry nested map
  let quantBytes = 0;
  for (const [p, l] of linears) {
    const n = l.inFeatures * l.outFeatures;
    const blocks = n / 64;
    quantBytes += n / 2 + 16 * 4 + (p.includes('mlp') ? blocks * 4 : blocks + Math.ceil(blocks / 256) * 4 + 256 * 4);
    assert.ok(layer(model, p) instanceof k.quant.QuantLinear);
  }
  const linearValues = linears.reduce((a, [, l]) => a + l.inFeatures * l.outFeatures, 0);
  const want = logits(model);
  const dir = join(mkdtempSync(join(tmpdir(), 'kestrel-bnb-')), 'q');
  const live = k.memory.stats().current.total;
  k.savePretrained(dir, { model, hfConfig });
  assert.equal(k.memory.stats().current.total, live, 'saving frees the views and JSON tensors it made');
  model.dispose();
  const before = paramBytes();
  const re = await k.loadCausalLM(dir);
  assert.equal(paramBytes() - before, floatBytes - 4 * linearValues + quantBytes, 'the float llama with its Linear weights (lm_head excepted) replaced by the packed bytes');
  assert.deepEqual(logits(re.model).toFloat32Array(), want.toFloat32Array(), 'logits bit-identical after save and reload');
  // the documented layout, read back without the loader
  const q = re.hfConfig.quantization_config as Record<string, unknown>;
  assert.deepEqual([q.quant_method, q.load_in_4bit, q.bnb_4bit_quant_storage, q.bnb_4bit_use_double_quant, q.llm_int8_skip_modules], ['bitsandbytes', true, 'uint8', true, ['lm_head']]);
  const f = new k.SafetensorsFile(join(dir, 'model.safetensors'));
  const w = 'model.layers.1.mlp.down_proj.weight'; // [64, 128], fp4
  assert.deepEqual([f.info(w).fileDtype, [...f.info(w).shape]], ['U8', [64 * 64, 1]]);
  assert.deepEqual([...f.info(`${w}.absmax`).shape], [128]);
  assert.deepEqual([...f.readArray(`${w}.quant_map`)], [...k.quant.FP4_CODE]);
  const state = JSON.parse(new TextDecoder().decode(f.readBytes(`${w}.quant_state.bitsandbytes__fp4`)));
  assert.deepEqual(state, { quant_type: 'fp4', blocksize: 64, dtype: 'float32', shape: [64, 128] });
  const qw = 'model.layers.0.self_attn.q_proj.weight'; // [64, 64], nf4, double-quantized
  assert.deepEqual([f.info(`${qw}.absmax`).fileDtype, [...f.info(`${qw}.nested_absmax`).shape], [...f.info(`${qw}.nested_quant_map`).shape]], ['U8', [1], [256]]);
  const qs = JSON.parse(new TextDecoder().decode(f.readBytes(`${qw}.quant_state.bitsandbytes__nf4`)));
  assert.deepEqual([qs.quant_type, qs.blocksize, qs.shape, qs.nested_blocksize, typeof qs.nested_offset], ['nf4', 64, [64, 64], 256, 'number']);
  f.close();
});

test('bad checkpoints: clear errors naming the field or tensor', async () => {
  const q = `${PATHS[0]}.weight`;
  for (const method of ['gptq', 'awq'])
    await assert.rejects(k.loadCausalLM(fourBitFolder({ config: { quant_method: method, bits: 4 } }).dir), new RegExp(`quant_method "${method}" is not supported`));
  await assert.rejects(k.loadCausalLM(fourBitFolder({ edit: (t) => delete t[`${q}.absmax`] }).dir), new RegExp(`no tensor '${q}\\.absmax'`));
  await assert.rejects(k.loadCausalLM(fourBitFolder({ edit: (t) => delete t[`${q}.quant_state.bitsandbytes__nf4`] }).dir), new RegExp(`'${q}' is packed 4-bit but '${q}\\.quant_state\\.bitsandbytes__nf4'.*missing`));
  const wrongShape = (t: Record<string, k.Tensor>): void => {
    t[`${q}.quant_state.bitsandbytes__nf4`] = bytesOf({ quant_type: 'nf4', blocksize: BLOCK, dtype: 'float32', shape: [4, 16] });
  };
  await assert.rejects(k.loadCausalLM(fourBitFolder({ edit: wrongShape }).dir), /bitsandbytes__nf4' shape \[4,16\] does not match \[8, 8\] implied by the config/);
  await assert.rejects(k.loadCausalLM(fourBitFolder({ config: { ...BNB4, bnb_4bit_quant_storage: 'float32' } }).dir), /bnb_4bit_quant_storage "float32" is not supported/);
  await assert.rejects(k.loadCausalLM(fourBitFolder({ config: { ...BNB4, load_in_8bit: true } }).dir), /exactly one of load_in_4bit and load_in_8bit/);
  const as8bit = { ...BNB4, load_in_4bit: false, load_in_8bit: true };
  await assert.rejects(k.loadCausalLM(fourBitFolder({ config: as8bit }).dir), new RegExp(`'${q}' is uint8 but quantization_config says load_in_8bit`));
  await assert.rejects(k.loadCausalLM(fourBitFolder({ config: { ...as8bit, llm_int8_has_fp16_weight: true } }).dir), /llm_int8_has_fp16_weight true .* is not supported/);
  await assert.rejects(k.loadCausalLM(fourBitFolder({ edit: (t) => (t[`${q}.absmax`] = k.tensor(new Float32Array(1))) }).dir), /\.absmax' has 1 elements \[1\], expected 2/);
});
