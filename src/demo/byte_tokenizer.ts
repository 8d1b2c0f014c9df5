// A byte-level tokenizer folder written from scratch: the 256 bytes (GPT-2's byte-to-unicode
// alphabet, no merges) plus ChatML's special tokens, and a ChatML chat template. Every string
// encodes, so the demo needs no downloaded vocabulary.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { writeJsonAtomic } from '../io/hf_folder.js';

export const SPECIALS = ['<|endoftext|>', '<|im_start|>', '<|im_end|>'] as const;
export const BYTE_VOCAB = 256 + SPECIALS.length;

/** GPT-2's reversible map from bytes to printable unicode characters. */
function byteAlphabet(): string[] {
  const keep = (b: number): boolean => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  let extra = 0;
  return Array.from({ length: 256 }, (_, b) => String.fromCodePoint(keep(b) ? b : 256 + extra++));
}

const CHATML = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

export function writeByteTokenizer(dir: string): void {
  mkdirSync(dir, { recursive: true });
  const vocab: Record<string, number> = {};
  byteAlphabet().forEach((ch, b) => (vocab[ch] = b));
  const added = SPECIALS.map((content, i) => ({ id: 256 + i, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }));
  writeJsonAtomic(join(dir, 'tokenizer.json'), {
    version: '1.0', truncation: null, padding: null, added_tokens: added, normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, vocab, merges: [] },
  });
  writeJsonAtomic(join(dir, 'tokenizer_config.json'), {
    bos_token: null, eos_token: '<|im_end|>', pad_token: '<|endoftext|>', unk_token: null, chat_template: CHATML,
    added_tokens_decoder: Object.fromEntries(added.map((a) => [String(a.id), { content: a.content, lstrip: false, rstrip: false, normalized: false, single_word: false, special: true }])),
    model_max_length: 256,
  });
}
