// The tiny fixture models ship no tokenizer, and GGUF needs one: this gives a fixture a byte-level
// BPE tokenizer.json covering exactly its vocab_size (256 byte tokens, its special ids replaced by
// named special tokens, extra ids as merges of letter pairs) and a ChatML-style chat template that
// ends turns with the model's EOS, in a temporary copy of the folder.
import { mkdtempSync, symlinkSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readJson } from '../../src/io/hf_folder.js';
import { exportGguf, type ExportGgufReport } from '../../src/gguf/export.js';
import type { ExportType } from '../../src/gguf/constants.js';
import { generate } from '../../src/infer/generate.js';
import { type Pretrained, loadCausalLM } from '../../src/models/load.js';
import type { CausalLM } from '../../src/models/causal_lm.js';
import type { Gpt2LMHeadModel } from '../../src/models/gpt2.js';
import { tensor } from '../../src/ops/creation.js';
import { toArray, toFloat32Array } from '../../src/ops/transfer.js';
import { noGrad } from '../../src/autograd/index.js';

/** GPT-2's bytes_to_unicode: every byte as a printable character. */
export function byteChars(): string[] {
  const keep = (b: number): boolean => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  let extra = 0;
  return Array.from({ length: 256 }, (_, b) => String.fromCodePoint(keep(b) ? b : 256 + extra++));
}

export interface TinyTokenizerOptions {
  vocabSize: number;
  /** id -> special token string */
  special: Record<number, string>;
  bos?: string;
  eos?: string;
  /** extra (non-special) added tokens whose text repeats a vocabulary entry: the duplicate case */
  duplicateOf?: { id: number; content: string };
  template?: string;
}

/** Writes tokenizer.json + tokenizer_config.json into dir. */
export function writeTinyTokenizer(dir: string, o: TinyTokenizerOptions): void {
  const chars = byteChars();
  const vocab: Record<string, number> = {};
  const merges: string[] = [];
  const taken = (id: number): boolean => id in o.special || o.duplicateOf?.id === id;
  for (let id = 0; id < Math.min(256, o.vocabSize); id++) if (!taken(id)) vocab[chars[id]] = id;
  const letters = 'abcdefghijklmnopqrstuvwxyz';
  for (let id = 256; id < o.vocabSize; id++) {
    const n = id - 256, a = letters[n % 26], b = letters[Math.floor(n / 26) % 26];
    if (taken(id) || vocab[a + b] !== undefined) continue;
    vocab[a + b] = id;
    merges.push(`${a} ${b}`);
  }
  const added = Object.entries(o.special).map(([id, content]) => ({ id: Number(id), content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }));
  if (o.duplicateOf) added.push({ id: o.duplicateOf.id, content: o.duplicateOf.content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: false });
  const json = {
    version: '1.0', truncation: null, padding: null, added_tokens: added, normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: null, decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false, byte_fallback: false, vocab, merges },
  };
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(json));
  const eos = o.eos ?? null;
  const template = o.template ?? `{% for m in messages %}<|turn|>{{ m.role }}\n{{ m.content }}${eos ?? ''}\n{% endfor %}{% if add_generation_prompt %}<|turn|>assistant\n{% endif %}`;
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: o.bos ?? null, eos_token: eos, chat_template: template, model_max_length: 2048 }));
}

/**
 * A temporary folder with the fixture's config, weights (linked) and a tiny tokenizer whose
 * special ids are the config's bos/eos/pad.
 * @example const dir = fixtureWithTokenizer('/work/shared/fixtures/models/llama')
 */
export function fixtureWithTokenizer(src: string, extra: Partial<TinyTokenizerOptions> = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'kestrel-gguf-'));
  for (const f of ['config.json', 'model.safetensors', 'generation_config.json']) if (existsSync(join(src, f))) symlinkSync(join(src, f), join(dir, f));
  const c = readJson(join(src, 'config.json'));
  const id = (k: string): number | null => (typeof c[k] === 'number' ? (c[k] as number) : null);
  const special: Record<number, string> = {};
  const [bos, eos, pad] = [id('bos_token_id'), id('eos_token_id'), id('pad_token_id')];
  if (pad !== null) special[pad] = '<pad>';
  if (bos !== null) special[bos] = '<s>';
  if (eos !== null) special[eos] = bos === eos ? '<s>' : '</s>';
  writeTinyTokenizer(dir, { vocabSize: c.vocab_size as number, special, bos: bos === null ? undefined : special[bos], eos: eos === null ? undefined : special[eos], ...extra });
  return dir;
}

/**
 * A fixture model (with a tiny tokenizer) loaded and exported to dir/<type>.gguf.
 * @example const { file, p } = await exportFixture('/work/shared/fixtures/models/llama', 'f16')
 */
export async function exportFixture(src: string, type: ExportType, extra: Partial<TinyTokenizerOptions> = {}): Promise<{ dir: string; file: string; report: ExportGgufReport; p: Pretrained<CausalLM | Gpt2LMHeadModel> }> {
  const dir = fixtureWithTokenizer(src, extra);
  const p = await loadCausalLM(dir);
  const file = join(dir, `${type}.gguf`);
  const report = exportGguf(p.model, p.tokenizer!, file, { type, dir });
  return { dir, file, report, p };
}

/** Kestrel's greedy continuation (n new ids) of one prompt. */
export async function kestrelGreedy(model: CausalLM | Gpt2LMHeadModel, prompt: number[], n: number): Promise<number[]> {
  const ids = tensor([prompt], { dtype: 'int64' });
  const out = await generate(model, ids, { maxNewTokens: n, temperature: 0 });
  const row = (toArray(out) as number[][])[0];
  ids.dispose();
  out.dispose();
  return row.slice(prompt.length);
}

/** Kestrel's next-token probabilities (float64 softmax of the last logits row) after one prompt. */
export function kestrelNextProbs(model: CausalLM | Gpt2LMHeadModel, prompt: number[]): Float64Array {
  return noGrad(() => {
    const ids = tensor([prompt], { dtype: 'int64' });
    const { logits } = model.forward({ inputIds: ids });
    const all = toFloat32Array(logits!);
    const V = logits!.shape[2];
    const last = Float64Array.from(all.subarray(all.length - V));
    ids.dispose();
    logits!.dispose();
    const max = Math.max(...last);
    const e = last.map((v) => Math.exp(v - max));
    const z = e.reduce((a, b) => a + b, 0);
    return e.map((v) => v / z);
  });
}
