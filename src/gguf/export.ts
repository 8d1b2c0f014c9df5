// exportGguf: a loaded causal LM and its tokenizer -> one GGUF file llama.cpp loads (architecture
// keys and tensors from arch.ts, tokenizer keys from vocab.ts, the EOS/template check of
// eos_check.ts), written by writer.ts tensor by tensor, so peak memory is the model plus one tensor.
import { basename, resolve } from 'node:path';
import type { CausalLM } from '../models/causal_lm.js';
import type { Gpt2LMHeadModel } from '../models/gpt2.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { archExport } from './arch.js';
import { encodeGgml } from './codec.js';
import { EXPORT_TYPES, type ExportType, type GgmlTypeName } from './constants.js';
import { type EosCheck, checkEos } from './eos_check.js';
import { tensorType } from './tensor_types.js';
import { vocabExport } from './vocab.js';
import { type GgufTensorSpec, type GgufValue, gv, writeGguf } from './writer.js';

export interface ExportGgufOptions {
  type: ExportType;
  /** the model folder (its tokenizer files are read for merges and scores) */
  dir: string;
  /** ids generation stops at besides EOS (generation_config.json's eos_token_id) */
  stopIds?: readonly number[];
  /** general.name (default: the folder name) */
  name?: string;
  onProgress?: (done: number, total: number) => void;
}

export interface ExportGgufReport {
  file: string;
  arch: string;
  /** how many tensors were written in each ggml type */
  types: Partial<Record<GgmlTypeName, number>>;
  eos: EosCheck;
  warnings: string[];
}

/**
 * Writes `out` (atomically) from a loaded model and its tokenizer.
 * @example const r = exportGguf(model, tok, 'smol.q8_0.gguf', { type: 'q8_0', dir: './SmolLM2-135M' }); console.log(r.eos.message)
 */
export function exportGguf(model: CausalLM | Gpt2LMHeadModel, tok: Tokenizer, out: string, o: ExportGgufOptions): ExportGgufReport {
  if (!Object.hasOwn(EXPORT_TYPES, o.type)) throw new Error(`gguf export: --type must be one of ${Object.keys(EXPORT_TYPES).join(', ')}, got '${o.type}'`);
  const a = archExport(model);
  const vocab = vocabExport(o.dir, tok, model.config.vocabSize);
  const eos = checkEos(tok, o.stopIds ?? []);
  const quantized = !['f32', 'f16', 'bf16'].includes(o.type);
  const kv = new Map<string, GgufValue>([
    ['general.architecture', gv.str(a.arch)], ['general.name', gv.str(o.name ?? basename(resolve(o.dir)))],
    ['general.file_type', gv.u32(EXPORT_TYPES[o.type])], ['general.alignment', gv.u32(32)],
    ...(quantized ? [['general.quantization_version', gv.u32(2)] as [string, GgufValue]] : []),
    ...a.kv, ...vocab.kv,
  ]);
  if (eos.endOfTurn && eos.endOfTurn.id !== tok.eosTokenId) kv.set('tokenizer.ggml.eot_token_id', gv.u32(eos.endOfTurn.id));
  const types: Partial<Record<GgmlTypeName, number>> = {};
  const tensors: GgufTensorSpec[] = a.tensors.map((t) => {
    const type = tensorType(t, o.type, model.config.numLayers);
    types[type] = (types[type] ?? 0) + 1;
    return { name: t.name, type, shape: t.shape, data: () => encodeGgml(type, t.values()) };
  });
  writeGguf(out, kv, tensors, { onProgress: o.onProgress });
  return { file: out, arch: a.arch, types, eos, warnings: [...a.warnings, ...vocab.warnings] };
}
