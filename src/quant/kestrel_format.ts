// Kestrel's quantized checkpoint folder (what `kestrel quantize` writes and loadPretrained reads):
// an HF folder whose config.json carries
//   quantization_config: { quant_method: "kestrel", format: "int8" | "q4", group_size: 32,
//                          calibration: "awq" | "rtn", modules: ["model.layers.0.self_attn.q_proj", ..., "lm_head"] }
// and whose model.safetensors holds, for every listed module P,
//   P.qweight      int8 [out*in] row-major (int8), or uint8 [ceil(out*in/2)] two codes per byte,
//                  the first in the high nibble (q4: code q stands for q - 8)
//   P.scales       float32: int8 the absmax per row (W = q * scale / 127); q4 one scale per group
//                  of group_size values of the flattened weight (W = scale * (q - 8))
//   P.input_scale  float32 [in], optional (AWQ): the input is multiplied by it before the product
//   P.bias         float, when the layer has one
// beside every other tensor in float. A tied head is listed as "lm_head" though the config ties it:
// it is a quantized copy of the embedding, which stays float for the token lookups.
import type { CheckpointFolder, Json } from '../io/hf_folder.js';
import { Linear } from '../nn/layers.js';
import type { Module } from '../nn/module.js';
import { isMeta } from '../tensor/meta.js';
import type { Tensor } from '../tensor/tensor.js';
import { Reader } from './bnb.js';
import { QuantLinear } from './quant_linear.js';

export const KESTREL_QUANT_METHOD = 'kestrel';
const SAVED_FORMATS = ['int8', 'q4'] as const;

export interface KestrelQuantConfig {
  format: (typeof SAVED_FORMATS)[number];
  groupSize: number;
  calibration: 'awq' | 'rtn';
  modules: string[];
}

/** config.json's quantization_config when it is Kestrel's (checked field by field), else null. */
export function readKestrelQuantConfig(config: Json, file: string): KestrelQuantConfig | null {
  const q = config.quantization_config as Json | null | undefined;
  if (!q || typeof q !== 'object' || Array.isArray(q) || q.quant_method !== KESTREL_QUANT_METHOD) return null;
  const at = (k: string, msg: string): Error => new Error(`${file}: quantization_config.${k} ${msg}`);
  if (!(SAVED_FORMATS as readonly unknown[]).includes(q.format)) throw at('format', `must be one of ${SAVED_FORMATS.join(', ')}, got ${JSON.stringify(q.format)}`);
  const g = q.group_size;
  if (typeof g !== 'number' || !Number.isInteger(g) || g < 16 || g > 4096 || (g & (g - 1)) !== 0) throw at('group_size', `must be a power of two in [16, 4096], got ${JSON.stringify(g)}`);
  if (q.calibration !== 'awq' && q.calibration !== 'rtn') throw at('calibration', `must be "awq" or "rtn", got ${JSON.stringify(q.calibration)}`);
  if (!Array.isArray(q.modules) || !q.modules.every((m) => typeof m === 'string')) throw at('modules', 'must be a list of module paths');
  return { format: q.format as KestrelQuantConfig['format'], groupSize: g, calibration: q.calibration, modules: q.modules as string[] };
}

/**
 * The tensors and config.json of a model with QuantLinear layers in Kestrel's layout (above).
 * @example const c = kestrelQuantCheckpoint(model, hfConfig, 'awq'); saveCheckpointFolder(dir, { config: c.config, tensors: c.tensors })
 */
export function kestrelQuantCheckpoint(model: Module, hfConfig: Json, calibration: 'awq' | 'rtn'): { config: Json; tensors: Record<string, Tensor> } {
  const tensors: Record<string, Tensor> = { ...model.stateDict() };
  const modules: string[] = [];
  const kinds = new Set<string>();
  let groupSize = 32;
  for (const [path, m] of model.namedModules()) {
    if (!(m instanceof QuantLinear)) continue;
    if (!(SAVED_FORMATS as readonly string[]).includes(m.type)) throw new Error(`kestrelQuantCheckpoint: ${path} is ${m.type}; Kestrel's folders hold ${SAVED_FORMATS.join(' or ')} layers`);
    kinds.add(m.type);
    if (m.type === 'q4') groupSize = m.blockSize;
    modules.push(path);
    tensors[`${path}.qweight`] = m.qweight;
    tensors[`${path}.scales`] = m.scales;
    if (m.input_scale) tensors[`${path}.input_scale`] = m.input_scale;
  }
  if (kinds.size !== 1) throw new Error(`kestrelQuantCheckpoint: expected layers of one format, found ${kinds.size ? [...kinds].join(' and ') : 'none'}`);
  const quantization_config = { quant_method: KESTREL_QUANT_METHOD, format: [...kinds][0], group_size: groupSize, calibration, modules };
  return { config: { ...hfConfig, quantization_config }, tensors };
}

/**
 * Replaces the listed Linears of a (lazily built) model by QuantLinears holding the stored bytes,
 * adding `lm_head` for a tied model; returns the checkpoint keys used (loadWeights reads the rest).
 * @example const used = loadKestrelQuantLinears(model, folder, 'dir/config.json', { backend: 'cpu' })
 */
export function loadKestrelQuantLinears(model: Module, folder: CheckpointFolder, file: string, opts: { backend?: string } = {}): Set<string> {
  const cfg = readKestrelQuantConfig(folder.config, file);
  const r = new Reader(folder);
  if (!cfg) return r.used;
  const modules = new Map(model.namedModules());
  for (const path of cfg.modules) {
    const dot = path.lastIndexOf('.');
    const [parentPath, key] = dot < 0 ? ['', path] : [path.slice(0, dot), path.slice(dot + 1)];
    const parent = modules.get(parentPath);
    const layer: unknown = parent && Reflect.get(parent, key);
    const tiedHead = path === 'lm_head' && layer === undefined ? (Reflect.get(modules.get('model') ?? {}, 'embed_tokens') as { weight?: Tensor } | undefined)?.weight : undefined;
    if (!parent || !(layer instanceof Linear || tiedHead)) throw new Error(`${file}: quantization_config.modules lists '${path}', which is not a Linear of this model`);
    const [N, K] = layer instanceof Linear ? [layer.outFeatures, layer.inFeatures] : tiedHead!.shape;
    const n = N * K;
    const q4 = cfg.format === 'q4';
    const data = r.bytes(`${path}.qweight`, q4 ? 'uint8' : 'int8', q4 ? Math.ceil(n / 2) : n, `${cfg.format} codes of [${N}, ${K}]`);
    const scales = r.floats(`${path}.scales`, q4 ? Math.ceil(n / cfg.groupSize) : N, q4 ? `one scale per ${cfg.groupSize} values` : 'one absmax per row');
    const inputScale = r.has(`${path}.input_scale`) ? r.floats(`${path}.input_scale`, K, 'one factor per input feature') : undefined;
    const bias = layer instanceof Linear ? layer.bias : null;
    const weight = layer instanceof Linear ? layer.weight : tiedHead!;
    const backend = isMeta(weight) ? opts.backend : weight.backendName;
    Reflect.set(parent, key, new QuantLinear({ type: cfg.format, inFeatures: K, outFeatures: N, data, scales, blockSize: q4 ? cfg.groupSize : undefined, inputScale }, { bias, backend }));
    r.nextLayer(); // QuantLinear copied the arrays
    if (layer instanceof Linear) layer.weight.dispose();
  }
  return r.used;
}
