// (prompt, completion) -> token ids with labels -100 on the prompt, by the same code SFT uses:
// text through encodeLossSpans (the prompt's tokens are found by tokenizing it alone, robust to
// merges across the boundary) plus eos, chat through the chat format's encoder (the template, its
// generation prompt) keeping only the last assistant turn as the completion.
import { encodeLossSpans } from '../data/chat.js';
import { DataError, type Where } from '../data/errors.js';
import { type Example, IGNORE_INDEX } from '../data/example.js';
import { makeEncoder } from '../data/formats.js';
import type { Tokenizer } from '../tokenizer/index.js';
import type { Turns } from './records.js';

export interface CompletionEncoderOptions {
  tokenizer: Tokenizer;
  /** a built-in template name or Jinja source (default the tokenizer's, else a detected built-in) */
  chatTemplate?: string;
  /** appended to text completions (default the tokenizer's eos) */
  eosId?: number;
}

/** Encodes each completion of a record after its prompt: one Example per completion. */
export type CompletionEncoder = (turns: Turns, where: Where) => Example[];

/** Labels -100 before the last run of labelled tokens: the final assistant turn only. */
function lastSpanOnly(ex: Example): Example {
  let end = ex.labels.length;
  while (end > 0 && ex.labels[end - 1] === IGNORE_INDEX) end--;
  let start = end;
  while (start > 0 && ex.labels[start - 1] !== IGNORE_INDEX) start--;
  return { inputIds: ex.inputIds, labels: ex.labels.map((l, i) => (i >= start ? l : IGNORE_INDEX)) };
}

/**
 * The encoder for a tokenizer; a chat record needs a chat template (the tokenizer's or one given).
 * @example
 * const enc = completionEncoder({ tokenizer: tok });
 * const [chosen, rejected] = enc({ kind: 'text', prompt: 'Q:', completions: [' yes', ' no'] }, { file: 'p.jsonl', line: 1 });
 */
export function completionEncoder(opts: CompletionEncoderOptions): CompletionEncoder {
  const tok = opts.tokenizer;
  const eos = opts.eosId ?? tok.eosTokenId;
  const codec = { encode: (s: string) => tok.encode(s), decode: (ids: readonly number[]) => tok.decode(ids) };
  let chat: ReturnType<typeof makeEncoder> | null = null; // made on first use: text data needs no template
  return (turns, where) => turns.completions.map((completion) => {
    let ex: Example;
    if (turns.kind === 'text') {
      if (eos === null) throw new Error('preference data: text completions end with the eos token, but the tokenizer has none; pass eosId');
      ex = encodeLossSpans(codec, turns.prompt + completion, [{ before: turns.prompt, through: null }]);
      if (ex.inputIds.at(-1) !== eos) (ex.inputIds.push(eos), ex.labels.push(eos));
    } else {
      chat ??= makeEncoder('chat', { tokenizer: tok, chatTemplate: opts.chatTemplate });
      ex = lastSpanOnly(chat.encode({ value: { messages: [...turns.prompt, completion] }, where }));
    }
    if (ex.labels.every((l) => l === IGNORE_INDEX)) throw new DataError(where, 'the completion encodes to no tokens after the prompt');
    return ex;
  });
}
