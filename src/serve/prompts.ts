// The prompt of a request as token ids: chat messages rendered with the model's chat template
// (tools passed through), or a completion prompt in any of OpenAI's forms (a string, a list of
// strings, a list of token ids, or a list of such lists). Errors name the field and index.
import { type ChatMessage, TemplateError, renderChat } from '../tokenizer/index.js';
import type { BodyFields } from './body_fields.js';
import { kind } from './body_fields.js';
import { invalid } from './errors.js';
import type { ServedModel } from './model_registry.js';

/** OpenAI content: a string, or a list of parts of which only {type: 'text'} can reach a text model. */
function messageContent(v: unknown, at: string): string | null {
  if (v === null || v === undefined) return null;
  if (typeof v === 'string') return v;
  if (!Array.isArray(v)) throw invalid(`'${at}' must be a string or a list of content parts, got ${kind(v)}`, at);
  return v.map((part, i) => {
    const p = part as { type?: unknown; text?: unknown };
    if (typeof part !== 'object' || part === null || p.type !== 'text' || typeof p.text !== 'string')
      throw invalid(`'${at}[${i}]' must be {"type": "text", "text": "..."} (this server reads text only)`, `${at}[${i}]`);
    return p.text;
  }).join('');
}

/** Validated messages as the chat template takes them (content null becomes ''). */
export function chatMessages(f: BodyFields): ChatMessage[] {
  const list = f.array('messages');
  if (!list) throw invalid(`'messages' is required`, 'messages');
  if (!list.length) throw invalid(`'messages' must hold at least one message`, 'messages');
  return list.map((m, i) => {
    const at = `messages[${i}]`;
    if (typeof m !== 'object' || m === null || Array.isArray(m)) throw invalid(`'${at}' must be an object with 'role' and 'content', got ${kind(m)}`, at);
    const msg = m as Record<string, unknown>;
    if (typeof msg.role !== 'string' || !msg.role) throw invalid(`'${at}.role' must be a non-empty string, got ${kind(msg.role)}`, `${at}.role`);
    const content = messageContent(msg.content, `${at}.content`);
    if (content === null && !(msg.role === 'assistant' && Array.isArray(msg.tool_calls)))
      throw invalid(`'${at}.content' is required`, `${at}.content`);
    return { ...msg, role: msg.role, content: content ?? '' };
  });
}

/** The chat prompt's token ids: the template's text, encoded without adding special tokens again. */
export function chatPromptIds(f: BodyFields, served: ServedModel): number[] {
  const messages = chatMessages(f);
  const tools = f.array('tools') ?? null;
  let text: string;
  try {
    text = renderChat(served.tokenizer, served.pretrained.model.config.modelType, messages, { tools });
  } catch (e) {
    if (e instanceof TemplateError) throw invalid(`the chat template of '${served.id}' refused the messages: ${e.message}`, 'messages');
    throw e;
  }
  return served.tokenizer.encode(text, { addSpecialTokens: false });
}

function tokenIds(v: unknown[], at: string, vocab: number): number[] {
  v.forEach((id, i) => {
    if (!Number.isInteger(id) || (id as number) < 0 || (id as number) >= vocab)
      throw invalid(`'${at}[${i}]' must be a token id in [0, ${vocab}), got ${JSON.stringify(id)}`, at);
  });
  return v as number[];
}

/** Completion prompts (or embedding inputs: field 'input') as token ids, one list per prompt. */
export function promptIds(f: BodyFields, served: ServedModel, field = 'prompt'): number[][] {
  const v = f.body[field];
  const vocab = served.pretrained.model.config.vocabSize;
  const encode = (s: string): number[] => served.tokenizer.encode(s);
  if (v === undefined || v === null) throw invalid(`'${field}' is required`, field);
  if (typeof v === 'string') return [encode(v)];
  const bad = (): never => {
    throw invalid(`'${field}' must be a string, a list of strings, a list of token ids or a list of lists of token ids`, field);
  };
  if (!Array.isArray(v) || !v.length) return bad();
  if (v.every((x) => typeof x === 'string')) return v.map(encode);
  if (v.every((x) => typeof x === 'number')) return [tokenIds(v, field, vocab)];
  if (v.every((x) => Array.isArray(x))) return v.map((x, i) => tokenIds(x as unknown[], `${field}[${i}]`, vocab));
  return bad();
}
