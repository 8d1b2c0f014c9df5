// loadGguf (what loadPretrained does for a .gguf path): config.json and the tokenizer rebuilt from
// the metadata (hf_from_gguf.ts), the model built lazily and every weight dequantized to float32,
// put back into HF's layout (the inverse of arch.ts: RoPE rows un-permuted, Gemma's 1 + w back to w,
// Mixtral's expert stacks split, GPT-2's Conv1D transposed) and cast to the load dtype.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { backendOf } from '../backend/index.js';
import { defaultBackend } from '../backend/index.js';
import type { Json } from '../io/hf_folder.js';
import type { TensorInfo } from '../io/safetensors.js';
import { type LoadOptions, type Pretrained, type WeightSource, loadWeights } from '../models/load.js';
import { buildModel, finishLoading } from '../models/registry.js';
import { tensor } from '../ops/creation.js';
import { loadAdapter } from '../lora/peft.js';
import type { Tensor } from '../tensor/tensor.js';
import { type Tokenizer, loadTokenizer } from '../tokenizer/index.js';
import { PERMUTED_ARCHS } from './arch.js';
import { decodeGgml } from './codec.js';
import { hfConfigOf, tokenizerFilesOf } from './hf_from_gguf.js';
import { GgufFile } from './reader.js';
import { permuteRopeRows, transpose2d } from './rope_layout.js';
import { EXPERT_STACKS, decoderHfName, gpt2HfName, isGpt2Conv1D } from './tensor_names.js';

/** Where each HF parameter comes from: a GGUF tensor, or expert e of a stacked one. */
interface Origin { gguf: string; expert?: number; shape: number[] }

/** The GGUF file as loadWeights' weight source, under HF names, in HF layout, as float32. */
class GgufWeights implements WeightSource {
  readonly origins = new Map<string, Origin>();
  readonly source: string;
  constructor(readonly g: GgufFile, private readonly config: Json) {
    this.source = g.path;
    const arch = g.get('general.architecture', 'string');
    for (const t of g.tensors.values()) {
      if (t.name === 'rope_freqs.weight') continue; // derived from rope_scaling (arch.ts)
      const stack = /^blk\.(\d+)\.(ffn_\w+_exps)\.weight$/.exec(t.name);
      if (stack) {
        const w = Object.keys(EXPERT_STACKS).find((k) => EXPERT_STACKS[k] === stack[2]);
        for (let e = 0; e < t.shape[0]; e++) this.origins.set(`model.layers.${stack[1]}.block_sparse_moe.experts.${e}.${w}.weight`, { gguf: t.name, expert: e, shape: t.shape.slice(1) });
        continue;
      }
      // GPT-2's head is its embedding: the output.weight copy has no parameter of its own
      if (arch === 'gpt2' && t.name === 'output.weight') continue;
      const hf = arch === 'gpt2' ? gpt2HfName(t.name) : decoderHfName(t.name, { sandwich: arch === 'gemma2', fusedGateUp: arch === 'phi3' });
      this.origins.set(hf, { gguf: t.name, shape: arch === 'gpt2' && isGpt2Conv1D(hf) ? [t.shape[1], t.shape[0]] : t.shape });
    }
  }
  get dir(): string { return this.g.path; }
  get names(): string[] { return [...this.origins.keys()]; }
  has(name: string): boolean { return this.origins.has(name); }
  file(): string { return this.g.path; }
  private origin(name: string): Origin {
    const o = this.origins.get(name);
    if (!o) throw new Error(`${this.g.path}: no tensor for parameter '${name}'`);
    return o;
  }
  info(name: string): TensorInfo {
    const o = this.origin(name), t = this.g.tensors.get(o.gguf)!;
    return { name, fileDtype: t.type, dtype: 'float32', shape: o.shape, begin: t.begin, end: t.begin + t.bytes };
  }
  /** The parameter's float32 values in HF layout. */
  values(name: string): Float32Array {
    const o = this.origin(name), t = this.g.tensors.get(o.gguf)!;
    let x = decodeGgml(t.type, this.g.readBytes(o.gguf), t.shape.reduce((a, b) => a * b, 1));
    const per = o.shape.reduce((a, b) => a * b, 1);
    if (o.expert !== undefined) x = x.slice(o.expert * per, (o.expert + 1) * per);
    const c = this.config, arch = this.g.get('general.architecture', 'string');
    if (arch === 'gpt2') return isGpt2Conv1D(name) ? transpose2d(x, t.shape[0], t.shape[1]) : x;
    const heads = /\.q_proj\./.test(name) ? (c.num_attention_heads as number) : /\.k_proj\./.test(name) ? (c.num_key_value_heads as number) : 0;
    if (heads && PERMUTED_ARCHS.has(arch)) return permuteRopeRows(x, o.shape[0], heads, { inverse: true });
    if ((arch === 'gemma' || arch === 'gemma2') && name.endsWith('norm.weight')) return x.map((v) => v - 1);
    return x;
  }
  readInto(name: string, dst: Tensor): void {
    const src = tensor(this.values(name), { shape: [...dst.shape], backend: dst.backendName });
    try {
      backendOf(dst).kernels.copy(src, dst);
    } finally {
      src.dispose();
    }
  }
}

/** The tokenizer the metadata describes (written to a temporary folder and loaded), or null with a note. */
async function ggufTokenizer(g: GgufFile): Promise<Tokenizer | null> {
  const t = tokenizerFilesOf(g);
  if ('why' in t) {
    process.stderr.write(`${g.path}: no tokenizer loaded: ${t.why}\n`);
    return null;
  }
  const dir = mkdtempSync(join(tmpdir(), 'kestrel-gguf-tok-'));
  try {
    for (const [f, v] of Object.entries(t.files)) writeFileSync(join(dir, f), v instanceof Uint8Array ? v : JSON.stringify(v));
    return await loadTokenizer(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * A GGUF file as a Kestrel model: config, weights (dequantized to opts.dtype, default float32) and
 * tokenizer from the file. `hfConfig` is the rebuilt config.json.
 * @example const { model, tokenizer } = await loadGguf('smol.q8_0.gguf')
 */
export async function loadGguf(path: string, opts: LoadOptions = {}): Promise<Pretrained> {
  const g = new GgufFile(path);
  let model: ReturnType<typeof buildModel> | null = null;
  try {
    const config = hfConfigOf(g);
    const configFile = `${path} (metadata)`;
    model = buildModel(config, configFile, { backend: 'meta' });
    const weights = new GgufWeights(g, config);
    loadWeights(model, weights, { dtype: opts.dtype ?? 'float32', configFile, backend: opts.backend ?? defaultBackend().name });
    finishLoading(model);
    if (opts.adapter) loadAdapter(model, opts.adapter, { baseModel: path });
    model.eval();
    const tokenizer = opts.tokenizer ? await loadTokenizer(opts.tokenizer) : await ggufTokenizer(g);
    return { model, config: model.config, tokenizer, hfConfig: config, generationConfig: null };
  } catch (e) {
    model?.dispose();
    throw e;
  } finally {
    g.close();
  }
}
