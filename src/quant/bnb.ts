// Pre-quantized bitsandbytes checkpoints ("*-bnb-4bit", LLM.int8()): read into QuantLinear layers
// without ever materialising a float copy of a quantized weight, and written back in the same layout.
//
// The on-disk layout, as bitsandbytes (QuantState.as_dict(packed=True) / from_dict, Linear4bit and
// Linear8bitLt._save_to_state_dict, the quantize_4bit op) and transformers (BitsAndBytesConfig,
// Bnb4BitHfQuantizer) write it:
// - config.json's `quantization_config` has quant_method "bitsandbytes" and load_in_4bit or
//   load_in_8bit; bnb_4bit_quant_type (nf4 | fp4, default fp4), bnb_4bit_use_double_quant,
//   bnb_4bit_compute_dtype, bnb_4bit_quant_storage (uint8 unless set), llm_int8_skip_modules (layers
//   left in float, usually lm_head), llm_int8_threshold (6.0), llm_int8_has_fp16_weight.
// - 4-bit Linear at <p>: `<p>.weight` uint8 [ceil(n/2), 1], two codes per byte, the first value in
//   the high nibble; `<p>.weight.absmax` float32, one scale per block of `blocksize` values;
//   `<p>.weight.quant_map` the 16-entry code book (informational: the 4-bit kernels use the table of
//   quant_type); `<p>.weight.quant_state.bitsandbytes__<nf4|fp4>` a uint8 tensor holding UTF-8 JSON
//   {quant_type, blocksize, dtype, shape} (dtype = the weight's original float type).
// - Double quantization: the block scales minus their mean are themselves quantized blockwise to 8 bits,
//   so `<p>.weight.absmax` is uint8 codes, `<p>.weight.nested_absmax` float32 one per
//   `nested_blocksize` (256) scales, `<p>.weight.nested_quant_map` the 256-entry code book (bnb's
//   dynamic map, used as stored), and the JSON adds nested_blocksize, nested_dtype, nested_offset:
//   scale[i] = nested_quant_map[absmax[i]] * nested_absmax[floor(i / nested_blocksize)] + nested_offset.
// - 8-bit Linear at <p>: `<p>.weight` int8 [out, in], `<p>.SCB` float32 [out] (each row's absmax) and
//   optionally `<p>.weight_format` uint8 0 (row-major; bnb's other codes are GPU tile layouts):
//   W[o, i] = weight[o, i] * SCB[o] / 127.
// LLM.int8()'s llm_int8_threshold splits *activation* columns above it into a float matmul and
// quantizes the rest of the activations to int8. Kestrel never quantizes activations: it computes
// x (weight * SCB / 127)ᵀ in float32, which is that scheme's limit with every column an outlier, so the
// threshold is read, kept in the config, and has nothing left to decide.
import { tensor } from '../ops/creation.js';
import { reshape } from '../ops/view.js';
import { type DType, type TypedArray, arrayView, dtypeBytes } from '../tensor/dtype.js';
import { isVerbatim } from '../io/safetensors_dtypes.js';
import { bf16ToF32, f16ToF32 } from '../tensor/half.js';
import { isMeta } from '../tensor/meta.js';
import { noGrad } from '../tensor/grad_mode.js';
import type { CheckpointFolder, Json } from '../io/hf_folder.js';
import { shapeStr } from '../tensor/layout.js';
import type { Tensor } from '../tensor/tensor.js';
import { Linear } from '../nn/layers.js';
import type { Module } from '../nn/module.js';
import { type FourBitType, codeOf } from './four_bit.js';
import { type QuantizedStats } from './double_quant.js';
import { QuantLinear, type QuantLinearState } from './quant_linear.js';

/** quantization_config as Kestrel reads it (transformers' BitsAndBytesConfig). */
export interface BnbConfig {
  bits: 4 | 8;
  quantType: FourBitType;
  doubleQuant: boolean;
  computeDtype: 'float32' | 'float16' | 'bfloat16';
  /** module names kept in float (transformers also keeps lm_head) */
  skipModules: string[];
  /** LLM.int8()'s activation outlier threshold (recorded; see the file comment) */
  threshold: number;
}

const FLOATS = ['float32', 'float16', 'bfloat16'] as const;
/** bitsandbytes' block sizes are powers of two (64 by default, 256 for the nested scales) */
const isPow2 = (v: unknown): v is number => typeof v === 'number' && v >= 2 && Number.isInteger(Math.log2(v));

/**
 * Reads config.json's quantization_config; null when the checkpoint is not quantized.
 * @example const q = readBnbConfig(folder.config, 'model/config.json') // { bits: 4, quantType: 'nf4', ... }
 */
export function readBnbConfig(config: Json, file: string): BnbConfig | null {
  const q = config.quantization_config as Json | null | undefined;
  if (q === undefined || q === null) return null;
  const at = (k: string): string => `${file}: quantization_config.${k}`;
  if (typeof q !== 'object' || Array.isArray(q)) throw new Error(`${file}: quantization_config must be an object`);
  if (q.quant_method !== 'bitsandbytes')
    throw new Error(`${at('quant_method')} ${JSON.stringify(q.quant_method)} is not supported (Kestrel loads bitsandbytes 4-bit and 8-bit checkpoints)`);
  const four = (q.load_in_4bit ?? q._load_in_4bit) === true;
  const eight = (q.load_in_8bit ?? q._load_in_8bit) === true;
  if (four === eight) throw new Error(`${file}: quantization_config must set exactly one of load_in_4bit and load_in_8bit`);
  const storage = q.bnb_4bit_quant_storage ?? 'uint8';
  if (four && storage !== 'uint8')
    throw new Error(`${at('bnb_4bit_quant_storage')} ${JSON.stringify(storage)} is not supported (Kestrel reads 4-bit codes packed in uint8)`);
  const quantType = q.bnb_4bit_quant_type ?? 'fp4';
  if (quantType !== 'nf4' && quantType !== 'fp4') throw new Error(`${at('bnb_4bit_quant_type')} ${JSON.stringify(quantType)} must be nf4 or fp4`);
  const dtype = String(q.bnb_4bit_compute_dtype ?? 'float32').replace(/^torch\./, '');
  if (!(FLOATS as readonly string[]).includes(dtype)) throw new Error(`${at('bnb_4bit_compute_dtype')} '${dtype}' must be one of ${FLOATS.join(', ')}`);
  const skip = q.llm_int8_skip_modules ?? [];
  if (!Array.isArray(skip) || skip.some((s) => typeof s !== 'string')) throw new Error(`${at('llm_int8_skip_modules')} must be a list of module names or null`);
  const threshold = q.llm_int8_threshold ?? 6;
  if (typeof threshold !== 'number' || !(threshold >= 0)) throw new Error(`${at('llm_int8_threshold')} must be a number >= 0, got ${JSON.stringify(threshold)}`);
  if (eight && q.llm_int8_has_fp16_weight === true)
    throw new Error(`${at('llm_int8_has_fp16_weight')} true (float weights kept for int8 training) is not supported; load the float checkpoint instead`);
  return { bits: four ? 4 : 8, quantType, doubleQuant: q.bnb_4bit_use_double_quant === true, computeDtype: dtype as BnbConfig['computeDtype'], skipModules: skip as string[], threshold };
}

/**
 * Reads checkpoint tensors by name, checking dtype kind and element count, and records what it used.
 * One layer's arrays are read into a reused arena: QuantLinear copies them onto its backend, so
 * loading a model leaves no per-layer JavaScript garbage behind (the load's RSS stays the model's).
 */
/** Reads quantized layers' arrays from a checkpoint folder (shared with kestrel_format.ts). */
export class Reader {
  readonly used = new Set<string>();
  private arena = new ArrayBuffer(1 << 20);
  private at = 0;
  constructor(private readonly folder: CheckpointFolder) {}

  /** Frees the arena for the next layer: the arrays handed out since the last call must be dead. */
  nextLayer(): void {
    this.at = 0;
  }

  private scratch(dtype: DType, n: number): TypedArray {
    const bytes = n * dtypeBytes(dtype);
    // a grown arena starts empty; the arrays already handed out keep the old one alive
    if (this.at + bytes > this.arena.byteLength) [this.arena, this.at] = [new ArrayBuffer(Math.max(2 * this.arena.byteLength, bytes)), 0];
    const view = arrayView(dtype, this.arena, this.at, n);
    this.at += Math.ceil(bytes / 8) * 8; // keep every view 8-byte aligned
    return view;
  }

  has(name: string): boolean {
    return this.folder.has(name);
  }

  /** The tensor's elements as stored (read straight into the array: no tensor, no second copy). */
  private take(name: string, kind: 'float' | 'uint8' | 'int8', numel: number, why: string): TypedArray {
    if (!this.folder.has(name)) throw new Error(`${this.folder.dir}: checkpoint has no tensor '${name}' (${why})`);
    const info = this.folder.info(name);
    const ok = kind === 'float' ? (FLOATS as readonly string[]).includes(info.dtype) : info.dtype === kind;
    if (!ok) throw new Error(`${this.folder.dir}: '${name}' is ${info.fileDtype}, expected ${kind} (${why})`);
    const n = info.shape.reduce((a, b) => a * b, 1);
    if (n !== numel) throw new Error(`${this.folder.dir}: '${name}' has ${n} elements ${shapeStr(info.shape)}, expected ${numel} (${why})`);
    this.used.add(name);
    return isVerbatim(info.fileDtype) ? this.folder.readArray(name, this.scratch(info.dtype, n)) : this.folder.readArray(name);
  }

  floats(name: string, numel: number, why: string): Float32Array {
    const a = this.take(name, 'float', numel, why);
    const dtype = this.folder.info(name).dtype;
    if (dtype === 'float32') return a as Float32Array;
    return Float32Array.from(a as Uint16Array, dtype === 'bfloat16' ? bf16ToF32 : f16ToF32);
  }

  bytes(name: string, kind: 'uint8' | 'int8', numel: number, why: string): Uint8Array | Int8Array {
    return this.take(name, kind, numel, why) as Uint8Array | Int8Array;
  }

  /** the JSON object stored as UTF-8 bytes in a uint8 tensor */
  json(name: string): Json {
    const info = this.folder.info(name);
    const raw = this.bytes(name, 'uint8', info.shape.reduce((a, b) => a * b, 1), 'packed quant_state JSON');
    let v: unknown;
    try {
      v = JSON.parse(new TextDecoder().decode(raw));
    } catch (e) {
      throw new Error(`${this.folder.dir}: '${name}' does not hold JSON (${(e as Error).message})`);
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`${this.folder.dir}: '${name}' must hold a JSON object`);
    return v as Json;
  }
}

/** Reads the 4-bit weight of the Linear at path ([out, in] from the model config). */
function read4bit(r: Reader, dir: string, path: string, out: number, inF: number): QuantLinearState {
  const w = `${path}.weight`;
  const stateKey = (['nf4', 'fp4'] as const).map((t) => `${w}.quant_state.bitsandbytes__${t}`).find((k) => r.has(k));
  if (!stateKey) throw new Error(`${dir}: '${w}' is packed 4-bit but '${w}.quant_state.bitsandbytes__nf4' (or __fp4) is missing`);
  const s = r.json(stateKey);
  const bad = (field: string, msg: string): Error => new Error(`${dir}: '${stateKey}' ${field} ${msg}`);
  const type: FourBitType = stateKey.endsWith('nf4') ? 'nf4' : 'fp4';
  if (s.quant_type !== type) throw bad('quant_type', `${JSON.stringify(s.quant_type)} does not match its key (${type})`);
  if (!isPow2(s.blocksize)) throw bad('blocksize', `${JSON.stringify(s.blocksize)} must be a power of two >= 2`);
  const shape = s.shape;
  if (!Array.isArray(shape) || shape.length !== 2 || shape[0] !== out || shape[1] !== inF)
    throw bad('shape', `${JSON.stringify(shape)} does not match [${out}, ${inF}] implied by the config`);
  if (typeof s.dtype !== 'string') throw bad('dtype', 'must be a string');
  const n = out * inF;
  const blocks = Math.ceil(n / s.blocksize);
  const data = r.bytes(w, 'uint8', Math.ceil(n / 2), `packed codes of [${out}, ${inF}], stored as [${Math.ceil(n / 2)}, 1]`) as Uint8Array;
  if (r.has(`${w}.quant_map`)) {
    // bitsandbytes' 4-bit kernels decode with the table of quant_type and ignore this copy; a different one is a format we do not know
    const map = r.floats(`${w}.quant_map`, 16, `${type} code book`);
    const want = codeOf(type);
    if (map.some((v, i) => Math.abs(v - want[i]) > 1e-6)) throw new Error(`${dir}: '${w}.quant_map' is not bitsandbytes' ${type} code book`);
  }
  const base = { type, inFeatures: inF, outFeatures: out, data, blockSize: s.blocksize };
  if (!r.has(`${w}.nested_absmax`)) return { ...base, scales: r.floats(`${w}.absmax`, blocks, `one scale per ${s.blocksize} values`) };
  if (!isPow2(s.nested_blocksize)) throw bad('nested_blocksize', `${JSON.stringify(s.nested_blocksize)} must be a power of two >= 2`);
  if (typeof s.nested_offset !== 'number' || !Number.isFinite(s.nested_offset)) throw bad('nested_offset', 'must be a finite number');
  const scales: QuantizedStats = {
    codes: r.bytes(`${w}.absmax`, 'uint8', blocks, `double-quantized scales, one per ${s.blocksize} values`) as Uint8Array,
    nestedAbsmax: r.floats(`${w}.nested_absmax`, Math.ceil(blocks / s.nested_blocksize), `one per ${s.nested_blocksize} scales`),
    code: r.floats(`${w}.nested_quant_map`, 256, '8-bit code book of the scales'),
    blockSize: s.nested_blocksize,
    offset: Math.fround(s.nested_offset),
  };
  return { ...base, scales };
}

/** Reads the LLM.int8() weight of the Linear at path. */
function read8bit(r: Reader, dir: string, path: string, out: number, inF: number): QuantLinearState {
  const w = `${path}.weight`;
  const data = r.bytes(w, 'int8', out * inF, `int8 [${out}, ${inF}]`) as Int8Array;
  const scales = r.floats(`${path}.SCB`, out, `one absmax per output row of '${w}'`);
  const fmt = `${path}.weight_format`;
  if (r.has(fmt)) {
    const code = r.bytes(fmt, 'uint8', 1, 'weight layout code')[0];
    if (code !== 0) throw new Error(`${dir}: '${fmt}' is ${code}, a GPU tile layout; Kestrel reads row-major int8 weights (0)`);
  }
  return { type: 'int8', inFeatures: inF, outFeatures: out, data, scales };
}

/** Every (parent, key, path) whose child is a float Linear. */
function linears(model: Module): { parent: Module; key: string; path: string; layer: Linear }[] {
  const out: { parent: Module; key: string; path: string; layer: Linear }[] = [];
  for (const [path, m] of model.namedModules())
    for (const [key, v] of Object.entries(m)) if (v instanceof Linear) out.push({ parent: m, key, path: path ? `${path}.${key}` : key, layer: v });
  return out;
}

/**
 * Replaces every Linear whose checkpoint weight is bitsandbytes-quantized by a quantized layer holding
 * the stored bytes, and returns the checkpoint keys it used (loadWeights loads the rest strictly).
 * Quantized layers go to `opts.backend` when the Linear is meta (lazily built), else to its weight's.
 * Linears whose weight is stored in float (llm_int8_skip_modules, lm_head) stay float Linears.
 * @example const used = loadBnbLinears(model, folder, 'model/config.json', { backend: 'cpu' }); loadWeights(model, folder, { dtype: 'auto', used })
 */
export function loadBnbLinears(model: Module, folder: CheckpointFolder, file: string, opts: { backend?: string } = {}): Set<string> {
  const cfg = readBnbConfig(folder.config, file);
  const r = new Reader(folder);
  if (!cfg) return r.used;
  let n = 0;
  for (const { parent, key, path, layer } of linears(model)) {
    const name = `${path}.weight`;
    if (!folder.has(name)) continue;
    const stored = folder.info(name).dtype;
    if ((FLOATS as readonly string[]).includes(stored) || stored === 'float64') continue;
    const want = cfg.bits === 4 ? 'uint8' : 'int8';
    if (stored !== want) throw new Error(`${folder.dir}: '${name}' is ${stored} but quantization_config says load_in_${cfg.bits}bit (${want} weights)`);
    const read = cfg.bits === 4 ? read4bit : read8bit;
    const state = read(r, folder.dir, path, layer.outFeatures, layer.inFeatures);
    // the Linear's bias parameter moves over; loadWeights fills it from `<path>.bias`. A lazily built
    // (meta) Linear never held a float weight: the quantized bytes are the first copy made
    const backend = isMeta(layer.weight) ? opts.backend : layer.weight.backendName;
    Reflect.set(parent, key, new QuantLinear(state, { bias: layer.bias, backend }));
    r.nextLayer(); // QuantLinear copied the arrays
    layer.weight.dispose();
    n++;
  }
  if (!n) throw new Error(`${file}: quantization_config is bitsandbytes ${cfg.bits}-bit but no Linear weight in ${folder.dir} is stored quantized`);
  return r.used;
}

/**
 * A QuantLinear's tensors under its path, in bitsandbytes' layout: its own buffers (or views of them);
 * the few new tensors (views, the quant_state JSON) go to `made` for the caller to free.
 */
function saveLayer(path: string, l: QuantLinear, out: Record<string, Tensor>, made: Tensor[]): void {
  const w = `${path}.weight`;
  const [N, K] = [l.outFeatures, l.inFeatures];
  const fresh = (t: Tensor): Tensor => (made.push(t), t);
  if (l.type === 'int8') {
    out[w] = fresh(noGrad(() => reshape(l.qweight, [N, K])));
    out[`${path}.SCB`] = l.scales;
    out[`${path}.weight_format`] = fresh(tensor(new Uint8Array([0]), { dtype: 'uint8', shape: [] }));
    return;
  }
  out[w] = fresh(noGrad(() => reshape(l.qweight, [Math.ceil((N * K) / 2), 1])));
  out[`${w}.absmax`] = l.scales;
  out[`${w}.quant_map`] = l.code!;
  const state: Json = { quant_type: l.type, blocksize: l.blockSize, dtype: 'float32', shape: [N, K] };
  if (l.nested_code && l.nested_absmax) {
    out[`${w}.nested_absmax`] = l.nested_absmax;
    out[`${w}.nested_quant_map`] = l.nested_code;
    Object.assign(state, { nested_blocksize: l.nestedBlockSize, nested_dtype: 'float32', nested_offset: l.nestedOffset });
  }
  out[`${w}.quant_state.bitsandbytes__${l.type}`] = fresh(tensor(new TextEncoder().encode(JSON.stringify(state)), { dtype: 'uint8' }));
}

/** quantization_config (BitsAndBytesConfig.to_dict's keys) for a model with these layers. */
function quantizationConfig(bits: 4 | 8, quantType: FourBitType, doubleQuant: boolean, floatLinears: string[]): Json {
  return {
    quant_method: 'bitsandbytes', _load_in_4bit: bits === 4, _load_in_8bit: bits === 8, load_in_4bit: bits === 4, load_in_8bit: bits === 8,
    bnb_4bit_quant_type: quantType, bnb_4bit_use_double_quant: doubleQuant, bnb_4bit_compute_dtype: 'float32', bnb_4bit_quant_storage: 'uint8',
    llm_int8_threshold: 6.0, llm_int8_skip_modules: floatLinears, llm_int8_has_fp16_weight: false, llm_int8_enable_fp32_cpu_offload: false,
  };
}

/**
 * What savePretrained writes: the model's state dict plus every quantized layer in bitsandbytes'
 * layout, and hfConfig with the matching quantization_config (removed when nothing is quantized).
 * Call dispose() once written (it frees the few tensors made for writing, not the model's).
 * @example const c = bnbCheckpoint(model, hfConfig); saveCheckpointFolder(dir, { config: c.config, tensors: c.tensors }); c.dispose()
 */
export function bnbCheckpoint(model: Module, hfConfig: Json): { config: Json; tensors: Record<string, Tensor>; dispose(): void } {
  const own = model.stateDict();
  const added: Record<string, Tensor> = {};
  const made: Tensor[] = [];
  const kinds = new Set<string>();
  const floatLinears: string[] = [];
  for (const [path, m] of model.namedModules()) {
    if (!(m instanceof QuantLinear)) {
      if (m instanceof Linear) floatLinears.push(path);
      continue;
    }
    saveLayer(path, m, added, made);
    kinds.add(m.type);
    if (m.doubleQuant) kinds.add('double');
  }
  const { quantization_config: _, ...config } = hfConfig;
  const dispose = (): void => made.forEach((t) => t.dispose());
  if (!kinds.size) return { config, tensors: own, dispose };
  const is8 = kinds.has('int8');
  if (is8 && kinds.size > 1) {
    dispose();
    throw new Error(`savePretrained: the model mixes int8 and 4-bit layers (${[...kinds].join(', ')}); a bitsandbytes checkpoint holds one kind`);
  }
  // each layer's quant_state names its own type; the config's is the one most layers use
  const type = kinds.has('fp4') && !kinds.has('nf4') ? 'fp4' : 'nf4';
  const config2 = quantizationConfig(is8 ? 8 : 4, type, kinds.has('double'), floatLinears);
  return { config: { ...config, quantization_config: config2 }, tensors: { ...own, ...added }, dispose };
}
