// GGUF metadata -> what an HF folder would hold: config.json (for the families arch.ts exports)
// and the tokenizer files with tokenizer_config.json (special tokens, chat template): tokenizer.json
// for a "gpt2" (byte-level BPE) vocabulary, tokenizer.model for a "llama" (SentencePiece) one.
// The inverse of arch.ts's keys and vocab.ts.
import type { Json } from '../io/hf_folder.js';
import type { GgufFile, GgufJs } from './reader.js';
import { sentencePieceModelBytes } from './spm_model.js';
import { TokenType } from './vocab.js';

/** The Split regexes of the pre-tokenizers vocab.ts recognises, by llama.cpp's name. */
const PRE_SPLITS: Record<string, string> = {
  'llama-bpe': "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
  qwen2: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
};

/**
 * config.json for the model in a GGUF file (model_type from general.architecture).
 * @example hfConfigOf(new GgufFile('m.gguf')).model_type // 'qwen2'
 */
export function hfConfigOf(g: GgufFile): Json {
  const arch = g.get('general.architecture', 'string');
  const n = (k: string, fallback?: number): number => g.get(`${arch}.${k}`, 'number', fallback);
  const ids = { bos_token_id: g.metadata.get('tokenizer.ggml.bos_token_id') ?? null, eos_token_id: g.metadata.get('tokenizer.ggml.eos_token_id') ?? null, pad_token_id: g.metadata.get('tokenizer.ggml.padding_token_id') ?? null };
  const embd = g.tensors.get('token_embd.weight');
  if (!embd) throw new Error(`${g.path}: no token_embd.weight tensor`);
  const vocab = embd.shape[0];
  if (arch === 'gpt2') {
    return { model_type: 'gpt2', architectures: ['GPT2LMHeadModel'], vocab_size: vocab, n_embd: n('embedding_length'), n_layer: n('block_count'), n_head: n('attention.head_count'), n_positions: n('context_length'), n_inner: n('feed_forward_length'), layer_norm_epsilon: n('attention.layer_norm_epsilon'), activation_function: 'gelu_new', ...ids };
  }
  const known = ['llama', 'qwen2', 'gemma', 'gemma2', 'phi3'];
  if (!known.includes(arch)) throw new Error(`${g.path}: architecture '${arch}' is not loaded by Kestrel (${[...known, 'gpt2'].join(', ')} are)`);
  const llama3 = g.metadata.get('kestrel.rope_scaling');
  if (g.tensors.has('rope_freqs.weight') && typeof llama3 !== 'string')
    throw new Error(`${g.path}: rope_freqs (Llama 3 style rope scaling) without Kestrel's kestrel.rope_scaling key cannot be turned back into config.json's rope_scaling yet`);
  const experts = n('expert_count', 0);
  const H = n('attention.head_count');
  const c: Json = {
    model_type: experts ? 'mixtral' : arch, vocab_size: vocab, hidden_size: n('embedding_length'), intermediate_size: n('feed_forward_length'),
    num_hidden_layers: n('block_count'), num_attention_heads: H, num_key_value_heads: n('attention.head_count_kv', H),
    head_dim: n('attention.key_length', n('embedding_length') / H), rms_norm_eps: n('attention.layer_norm_rms_epsilon'),
    rope_theta: n('rope.freq_base', 10000), max_position_embeddings: n('context_length'), tie_word_embeddings: !g.tensors.has('output.weight'), ...ids,
  };
  if (typeof llama3 === 'string') c.rope_scaling = JSON.parse(llama3) as Json;
  if (g.metadata.get(`${arch}.rope.scaling.type`) === 'linear') c.rope_scaling = { type: 'linear', factor: n('rope.scaling.factor') };
  if (experts) Object.assign(c, { num_local_experts: experts, num_experts_per_tok: n('expert_used_count') });
  if (arch === 'gemma' || arch === 'gemma2') c.hidden_activation = 'gelu_pytorch_tanh';
  if (arch === 'gemma2') Object.assign(c, { sliding_window: n('attention.sliding_window'), query_pre_attn_scalar: c.head_dim, attn_logit_softcapping: n('attn_logit_softcapping', 0) || null, final_logit_softcapping: n('final_logit_softcapping', 0) || null });
  return c;
}

/** tokenizer_config.json: the special tokens, add_bos/add_eos and the chat template from the metadata. */
function tokenizerConfigOf(g: GgufFile, tokens: GgufJs[]): Json {
  const tokenAt = (key: string): string | null => { const id = g.metadata.get(`tokenizer.ggml.${key}_token_id`); return typeof id === 'number' && id < tokens.length ? String(tokens[id]) : null; };
  const config: Json = {
    bos_token: tokenAt('bos'), eos_token: tokenAt('eos'), pad_token: tokenAt('padding'), unk_token: tokenAt('unknown'),
    add_bos_token: g.metadata.get('tokenizer.ggml.add_bos_token') === true, add_eos_token: g.metadata.get('tokenizer.ggml.add_eos_token') === true,
    model_max_length: g.metadata.get(`${String(g.metadata.get('general.architecture'))}.context_length`) ?? null,
  };
  const template = g.metadata.get('tokenizer.chat_template');
  if (typeof template === 'string') config.chat_template = template;
  return config;
}

/** A "llama" (SentencePiece) vocabulary as tokenizer.model bytes. */
function spmFiles(g: GgufFile, tokens: GgufJs[], types: GgufJs[]): Record<string, Json | Uint8Array> {
  const scores = g.metadata.get('tokenizer.ggml.scores') ?? [];
  const id = (key: string): number | null => { const v = g.metadata.get(`tokenizer.ggml.${key}_token_id`); return typeof v === 'number' ? v : null; };
  const model = sentencePieceModelBytes({
    pieces: tokens.map(String), scores: Array.isArray(scores) ? scores.map(Number) : [], types: types.map(Number),
    unk: id('unknown'), bos: id('bos'), eos: id('eos'), pad: id('padding'),
  });
  // llama.cpp's SentencePiece tokenizes as transformers' legacy LlamaTokenizer does
  return { 'tokenizer.model': model, 'tokenizer_config.json': { ...tokenizerConfigOf(g, tokens), legacy: true } };
}

/** A "gpt2" (byte-level BPE) vocabulary as tokenizer.json. */
function bpeFiles(g: GgufFile, tokens: GgufJs[], types: GgufJs[], merges: GgufJs[]): Record<string, Json> {
  const vocab: Record<string, number> = {};
  const added: Json[] = [];
  tokens.forEach((t, id) => {
    const type = types[id] ?? TokenType.NORMAL;
    if (type === TokenType.CONTROL || type === TokenType.USER_DEFINED) added.push({ id, content: String(t), single_word: false, lstrip: false, rstrip: false, normalized: false, special: type === TokenType.CONTROL });
    else if (type !== TokenType.UNUSED) vocab[String(t)] = id;
  });
  const split = PRE_SPLITS[String(g.metadata.get('tokenizer.ggml.pre'))];
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: !split };
  const tokenizer = {
    version: '1.0', truncation: null, padding: null, added_tokens: added, normalizer: null,
    pre_tokenizer: split ? { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: split }, behavior: 'Isolated', invert: false }, byteLevel] } : byteLevel,
    post_processor: null, decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false, byte_fallback: false, vocab, merges },
  };
  return { 'tokenizer.json': tokenizer, 'tokenizer_config.json': tokenizerConfigOf(g, tokens) };
}

/**
 * The tokenizer files for the metadata's vocabulary: tokenizer.json for "gpt2" (byte-level BPE),
 * tokenizer.model for "llama" (SentencePiece); the reason when it is another kind.
 * @example tokenizerFilesOf(new GgufFile('m.gguf')) // { files: { 'tokenizer.json': ..., 'tokenizer_config.json': ... } }
 */
export function tokenizerFilesOf(g: GgufFile): { files: Record<string, Json | Uint8Array> } | { why: string } {
  const model = g.metadata.get('tokenizer.ggml.model');
  const tokens = g.metadata.get('tokenizer.ggml.tokens'), types = g.metadata.get('tokenizer.ggml.token_type') ?? [], merges = g.metadata.get('tokenizer.ggml.merges') ?? [];
  if (!Array.isArray(tokens) || !Array.isArray(types) || !Array.isArray(merges)) throw new Error(`${g.path}: tokenizer.ggml.tokens / token_type / merges must be arrays`);
  if (model === 'llama') return { files: spmFiles(g, tokens, types) };
  if (model === 'gpt2') return { files: bpeFiles(g, tokens, types, merges) };
  return { why: `tokenizer.ggml.model '${String(model)}' is not rebuilt ('gpt2' byte-level BPE and 'llama' SentencePiece are)` };
}
