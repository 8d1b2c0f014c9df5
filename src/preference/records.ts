// Preference records -> (prompt, chosen, rejected) in one shape. The formats people have:
//   {prompt, chosen, rejected} strings                       TRL's standard format
//   {prompt?, chosen, rejected} message lists                 TRL's conversational format (UltraFeedback):
//                                                             prompt messages, or an implicit prompt shared by both
//   {chosen, rejected} "\n\nHuman: ...\n\nAssistant: ..."     Anthropic HH-RLHF transcripts, split at the last assistant turn
//   {prompt, completion, label}                               KTO's unpaired format (strings or messages)
import type { ChatMessage } from '../tokenizer/index.js';
import { chatMessages } from '../data/chat.js';
import { DataError } from '../data/errors.js';
import { stringField } from '../data/fields.js';
import type { DataRecord } from '../data/readers.js';

/** A prompt and its completions as text, or as chat messages (rendered with the chat template). */
export type Turns = { kind: 'text'; prompt: string; completions: string[] } | { kind: 'chat'; prompt: ChatMessage[]; completions: ChatMessage[] };

/** A paired record: completions [chosen, rejected]. */
export type PairRecord = Turns;
/** An unpaired (KTO) record: one completion and whether it is desirable. */
export type UnpairedRecord = Turns & { desirable: boolean };

const HH_ASSISTANT = '\n\nAssistant:';

/** The {role, content} list a field holds, validated by the chat reader; errors name the field and file:line. */
function messageField(rec: DataRecord, field: string): ChatMessage[] {
  try {
    return chatMessages({ value: { messages: rec.value[field] }, where: rec.where });
  } catch (e) {
    if (e instanceof DataError) throw new DataError(rec.where, e.problem.replace(/"messages/g, `"${field}`));
    throw e;
  }
}

/** HH-RLHF: the transcript up to and including its last "\n\nAssistant:" is the prompt. */
function splitTranscript(rec: DataRecord, field: string, text: string): [string, string] {
  const at = text.lastIndexOf(HH_ASSISTANT);
  if (at < 0) throw new DataError(rec.where, `field "${field}" has no prompt field beside it and no "\\n\\nAssistant:" turn to split at (HH-RLHF transcripts end with one)`);
  return [text.slice(0, at + HH_ASSISTANT.length), text.slice(at + HH_ASSISTANT.length)];
}

const sameMessages = (a: readonly ChatMessage[], b: readonly ChatMessage[]): boolean =>
  a.length === b.length && a.every((m, i) => m.role === b[i].role && m.content === b[i].content);

/** The last message of a list must be the assistant's reply: the completion. */
function lastReply(rec: DataRecord, field: string, msgs: ChatMessage[]): ChatMessage {
  const last = msgs.at(-1);
  if (!last || last.role !== 'assistant') throw new DataError(rec.where, `field "${field}" must end with an assistant message (the completion), got ${last ? `role "${last.role}"` : 'an empty list'}`);
  return last;
}

/**
 * A paired preference record in any of the supported formats.
 * @example
 * pairRecord({ value: { prompt: 'Q', chosen: ' good', rejected: ' bad' }, where: { file: 'p.jsonl', line: 1 } })
 * // { kind: 'text', prompt: 'Q', completions: [' good', ' bad'] }
 */
export function pairRecord(rec: DataRecord): PairRecord {
  const v = rec.value;
  if (v.chosen === undefined || v.rejected === undefined) {
    const keys = Object.keys(v).map((k) => JSON.stringify(k)).join(', ');
    throw new DataError(rec.where, `a preference record needs "chosen" and "rejected" (and usually "prompt"); got ${keys || '(no fields)'}`);
  }
  if (Array.isArray(v.chosen) || Array.isArray(v.rejected)) {
    const chosen = messageField(rec, 'chosen');
    const rejected = messageField(rec, 'rejected');
    if (v.prompt !== undefined && v.prompt !== null) {
      const prompt = typeof v.prompt === 'string' ? [{ role: 'user', content: v.prompt }] : messageField(rec, 'prompt');
      return { kind: 'chat', prompt, completions: [lastReply(rec, 'chosen', chosen), lastReply(rec, 'rejected', rejected)] };
    }
    // implicit prompt: both conversations share everything but their last (assistant) message
    const [pc, pr] = [chosen.slice(0, -1), rejected.slice(0, -1)];
    if (!sameMessages(pc, pr)) throw new DataError(rec.where, 'fields "chosen" and "rejected" have no "prompt" beside them and differ before their last message (the shared prompt)');
    return { kind: 'chat', prompt: pc, completions: [lastReply(rec, 'chosen', chosen), lastReply(rec, 'rejected', rejected)] };
  }
  const chosen = stringField(rec, v, 'chosen')!;
  const rejected = stringField(rec, v, 'rejected')!;
  const prompt = stringField(rec, v, 'prompt', { optional: true });
  if (prompt !== undefined) return { kind: 'text', prompt, completions: [chosen, rejected] };
  const [p1, c] = splitTranscript(rec, 'chosen', chosen);
  const [p2, r] = splitTranscript(rec, 'rejected', rejected);
  if (p1 !== p2) throw new DataError(rec.where, 'HH-RLHF transcripts "chosen" and "rejected" differ before their last "\\n\\nAssistant:" turn (they must share the conversation)');
  return { kind: 'text', prompt: p1, completions: [c, r] };
}

/**
 * A KTO record {prompt, completion, label} (strings, or message lists).
 * @example unpairedRecord({ value: { prompt: 'Q', completion: ' A', label: true }, where }) // desirable
 */
export function unpairedRecord(rec: DataRecord): UnpairedRecord {
  const v = rec.value;
  if (typeof v.label !== 'boolean') throw new DataError(rec.where, `field "label" must be true (desirable) or false (undesirable), got ${JSON.stringify(v.label ?? null)}`);
  if (Array.isArray(v.completion) || Array.isArray(v.prompt)) {
    const prompt = typeof v.prompt === 'string' ? [{ role: 'user', content: v.prompt }] : messageField(rec, 'prompt');
    const completion = messageField(rec, 'completion');
    return { kind: 'chat', prompt, completions: [lastReply(rec, 'completion', completion)], desirable: v.label };
  }
  return { kind: 'text', prompt: stringField(rec, v, 'prompt')!, completions: [stringField(rec, v, 'completion')!], desirable: v.label };
}
