// Chat examples with loss only on the assistant's tokens. The conversation is rendered with its
// chat template and tokenized once; each assistant turn's span is found by rendering the prefix up
// to that turn (with the generation prompt) and the prefix through it, tokenizing both, and taking
// their longest common token prefix with the whole: robust to templates that wrap, trim or rename
// turns (ChatML, Llama-3, Gemma, Zephyr, ...) and to BPE merges across a boundary.
import { type ChatMessage, TemplateLimitError, type Tokenizer } from '../tokenizer/index.js';
import { DataError, whereString } from './errors.js';
import { type Example, IGNORE_INDEX } from './example.js';
import { stringField, objectArrayField } from './fields.js';
import type { DataRecord } from './readers.js';

/** Length of the longest common prefix of a and b. */
export function commonPrefix(a: readonly number[], b: readonly number[]): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

/** A loss span given by two renderings: the text before it and the text through it (null: to the end). */
export interface PrefixSpan {
  readonly before: string;
  readonly through: string | null;
}

/** Encode/decode pair the span search uses (a Tokenizer with fixed options). */
export interface Codec {
  encode(text: string): number[];
  decode(ids: readonly number[]): string;
}

/**
 * Tokenizes text and takes loss on the spans: span tokens run from where encode(before) stops
 * agreeing with encode(text) to where encode(through) does. A token merged across the start
 * boundary gets loss (it holds response text); one merged across the end does not. Where the
 * prompt's last tokens were merged differently in the whole (gpt2 "\n\n" vs "\n","\n"), the
 * whole's tokens that only spell the rest of the prompt are skipped.
 * @example
 * encodeLossSpans({ encode: (s) => tok.encode(s), decode: (ids) => tok.decode(ids) }, 'Q: hi\nA: yo', [{ before: 'Q: hi\nA:', through: null }])
 */
export function encodeLossSpans(codec: Codec, text: string, spans: readonly PrefixSpan[]): Example {
  const inputIds = codec.encode(text);
  const labels = new Array<number>(inputIds.length).fill(IGNORE_INDEX);
  for (const s of spans) {
    const beforeIds = codec.encode(s.before);
    let a = commonPrefix(beforeIds, inputIds);
    let rest = a < beforeIds.length ? codec.decode(beforeIds.slice(a)) : '';
    while (rest.length > 0 && a < inputIds.length) {
      const piece = codec.decode([inputIds[a]]);
      if (piece.length === 0 || !rest.startsWith(piece)) break;
      rest = rest.slice(piece.length);
      a++;
    }
    const b = s.through === null ? inputIds.length : commonPrefix(codec.encode(s.through), inputIds);
    for (let t = a; t < b; t++) labels[t] = inputIds[t];
  }
  return { inputIds, labels };
}

/** ShareGPT speaker names -> chat roles. */
const SHAREGPT_ROLES: Readonly<Record<string, string>> = {
  human: 'user', user: 'user', gpt: 'assistant', assistant: 'assistant', model: 'assistant', chatgpt: 'assistant', bard: 'assistant',
  system: 'system', tool: 'tool', function_response: 'tool', observation: 'tool',
};

/** The messages of a chat record ({"messages": [{role, content}, ...]}), validated. */
export function chatMessages(rec: DataRecord): ChatMessage[] {
  const msgs = objectArrayField(rec, rec.value, 'messages');
  return msgs.map((m, i) => {
    const role = stringField(rec, m, 'role', { path: `messages[${i}].role` })!;
    const content = stringField(rec, m, 'content', { path: `messages[${i}].content` })!;
    return { ...m, role, content };
  });
}

/** The messages of a ShareGPT record ({"conversations": [{from, value}]}, optional top-level "system"). */
export function sharegptMessages(rec: DataRecord): ChatMessage[] {
  const turns = objectArrayField(rec, rec.value, 'conversations');
  const system = stringField(rec, rec.value, 'system', { optional: true });
  const out: ChatMessage[] = system !== undefined && system !== '' ? [{ role: 'system', content: system }] : [];
  turns.forEach((t, i) => {
    const from = stringField(rec, t, 'from', { path: `conversations[${i}].from` })!;
    const role = SHAREGPT_ROLES[from.toLowerCase()];
    if (role === undefined) {
      throw new DataError(rec.where, `field "conversations[${i}].from" is ${JSON.stringify(from)}; expected one of ${Object.keys(SHAREGPT_ROLES).join(', ')}`);
    }
    out.push({ role, content: stringField(rec, t, 'value', { path: `conversations[${i}].value` })! });
  });
  return out;
}

/**
 * Tokenizes a conversation with the chat template; labels are -100 except on assistant turns
 * (content and the end-of-turn marker; the template's newline after the marker is left out).
 * @example
 * encodeChat(tok, 'chatml', [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello' }], rec.where)
 * // loss on the tokens of 'Hello<|im_end|>'
 */
export function encodeChat(tok: Tokenizer, template: string, messages: readonly ChatMessage[], where: DataRecord['where']): Example {
  // A template that runs past its limits would do so on every record: stop the load (a plain
  // Error, which skipBadLines does not skip) instead of reporting each record as bad.
  const limitHit = (e: unknown): Error => new Error(`${whereString(where)}: ${(e as Error).message}`, { cause: e });
  const render = (msgs: readonly ChatMessage[], addGenerationPrompt: boolean): string => {
    try {
      return tok.applyChatTemplate(msgs, { template, addGenerationPrompt });
    } catch (e) {
      if (e instanceof TemplateLimitError) throw limitHit(e);
      throw new DataError(where, `chat template: ${(e as Error).message}`);
    }
  };
  // A template may reject a prefix (e.g. one that must end on a user turn without a prompt):
  // fall back to the prefix without a generation prompt, then to nothing.
  const renderPrefix = (msgs: readonly ChatMessage[]): string => {
    for (const agp of [true, false]) {
      try {
        return tok.applyChatTemplate(msgs, { template, addGenerationPrompt: agp });
      } catch (e) {
        if (e instanceof TemplateLimitError) throw limitHit(e);
      }
    }
    return '';
  };
  if (messages.length === 0) throw new DataError(where, 'the conversation is empty');
  const text = render(messages, false);
  const spans: PrefixSpan[] = [];
  messages.forEach((m, i) => {
    if (m.role !== 'assistant') return;
    const before = renderPrefix(messages.slice(0, i));
    const through = render(messages.slice(0, i + 1), false);
    // Trailing whitespace after the end-of-turn marker is template layout, not the reply.
    const trimmed = through.trimEnd();
    spans.push({ before, through: trimmed.length > before.length ? trimmed : through });
  });
  if (spans.length === 0) throw new DataError(where, 'the conversation has no assistant message (nothing to learn)');
  const codec: Codec = { encode: (s) => tok.encode(s, { addSpecialTokens: false }), decode: (ids) => tok.decode(ids) };
  const ex = encodeLossSpans(codec, text, spans);
  if (ex.labels.every((l) => l === IGNORE_INDEX)) {
    throw new DataError(where, 'no assistant tokens found through the chat template (it renders no assistant text)');
  }
  return ex;
}
