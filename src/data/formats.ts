// Record formats -> training examples {inputIds, labels}. Detected from a record's fields or chosen:
//   text          {"text"}                                 pretraining: bos (if the tokenizer adds one) + text + eos
//   pretokenized  {"input_ids", "labels"?}                  as given (for a model without a tokenizer)
//   alpaca        {"instruction", "input"?, "output"}       Stanford Alpaca prompt; loss on output + eos
//   chat          {"messages": [{role, content}]}           chat template; loss on assistant turns (chat.ts)
//   sharegpt      {"conversations": [{from, value}]}        mapped to chat
// Token id ranges are checked for every format at once, in loadDataset (example.ts checkTokenIds).
import { BUILTIN_TEMPLATES, type Tokenizer, detectChatTemplate } from '../tokenizer/index.js';
import { chatMessages, encodeChat, encodeLossSpans, sharegptMessages } from './chat.js';
import type { Example } from './example.js';
import { DataError } from './errors.js';
import { intArrayField, stringField } from './fields.js';
import type { DataRecord } from './readers.js';

export type FormatName = 'text' | 'pretokenized' | 'alpaca' | 'chat' | 'sharegpt';
export const FORMATS: readonly FormatName[] = ['text', 'pretokenized', 'alpaca', 'chat', 'sharegpt'];

/**
 * The format a record's fields announce (checked most specific first).
 * @example
 * detectFormat({ value: { messages: [] }, where: { file: 'a.jsonl', line: 1 } }) // 'chat'
 */
export function detectFormat(rec: DataRecord): FormatName {
  const has = (k: string): boolean => rec.value[k] !== undefined;
  if (has('messages')) return 'chat';
  if (has('conversations')) return 'sharegpt';
  if (has('input_ids')) return 'pretokenized';
  if (has('instruction') && has('output')) return 'alpaca';
  if (has('text')) return 'text';
  const keys = Object.keys(rec.value);
  throw new DataError(rec.where, `cannot tell the data format from the fields ${keys.length ? keys.map((k) => JSON.stringify(k)).join(', ') : '(none)'}; expected "text", "input_ids", "instruction"+"output", "messages" or "conversations" (or choose a format)`);
}

// Stanford Alpaca's prompts (tatsu-lab/stanford_alpaca train.py PROMPT_DICT).
const ALPACA_WITH_INPUT =
  'Below is an instruction that describes a task, paired with an input that provides further context. ' +
  'Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n';
const ALPACA_NO_INPUT =
  'Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n' +
  '### Instruction:\n{instruction}\n\n### Response:\n';

/** The Alpaca prompt for an instruction and optional input (the response follows it). */
export function alpacaPrompt(instruction: string, input?: string): string {
  const t = input !== undefined && input.trim() !== '' ? ALPACA_WITH_INPUT.replace('{input}', () => input) : ALPACA_NO_INPUT;
  return t.replace('{instruction}', () => instruction);
}

export interface EncoderOptions {
  readonly tokenizer?: Tokenizer;
  /** chat / sharegpt: a built-in template name or Jinja source; default the tokenizer's, else a detected built-in */
  readonly chatTemplate?: string;
  /** end-of-document id appended by text and alpaca; default tokenizer.eosTokenId */
  readonly eosId?: number;
  /** the text format's field; default "text" */
  readonly textField?: string;
}

/** Turns records of one format into examples; `identity` names everything that shapes its output (for the cache key). */
export interface RecordEncoder {
  readonly format: FormatName;
  readonly identity: string;
  encode(rec: DataRecord): Example;
}

function needTokenizer(format: FormatName, tok: Tokenizer | undefined): Tokenizer {
  if (tok === undefined) throw new Error(`data: format ${format} needs a tokenizer (pass tokenizer, or use pretokenized data with "input_ids")`);
  return tok;
}

function needEos(format: FormatName, tok: Tokenizer, eosId: number | undefined): number {
  const id = eosId ?? tok.eosTokenId;
  if (id === null) throw new Error(`data: format ${format} ends each example with the eos token, but the tokenizer has no eos_token; pass eosId`);
  return id;
}

/** The chat template to use: the option (built-in name or source), the tokenizer's, or a detected built-in. */
function chatTemplateSource(tok: Tokenizer, option: string | undefined): string {
  const t = option ?? tok.chatTemplate() ?? detectChatTemplate(tok);
  if (t === null || t === undefined) {
    throw new Error(`data: chat data needs a chat template: the tokenizer has none and none was detected; pass chatTemplate (one of ${Object.keys(BUILTIN_TEMPLATES).join(', ')}, or Jinja source)`);
  }
  return Object.hasOwn(BUILTIN_TEMPLATES, t) ? BUILTIN_TEMPLATES[t as keyof typeof BUILTIN_TEMPLATES] : t;
}

/** Appends eos (with loss) unless the tokenizer already put it last. */
function withEos(ex: Example, eos: number): Example {
  if (ex.inputIds.at(-1) !== eos) {
    ex.inputIds.push(eos);
    ex.labels.push(eos);
  }
  return ex;
}

/**
 * The encoder of a format; checks up front what it needs (a tokenizer, an eos id, a template).
 * @example
 * const enc = makeEncoder('alpaca', { tokenizer: tok });
 * enc.encode({ value: { instruction: 'Add 2+2', output: '4' }, where: { file: 'a.json', record: 1 } })
 */
export function makeEncoder(format: FormatName, opts: EncoderOptions = {}): RecordEncoder {
  const tok = opts.tokenizer;
  switch (format) {
    case 'text': {
      const t = needTokenizer(format, tok), eos = needEos(format, t, opts.eosId), field = opts.textField ?? 'text';
      return {
        format, identity: JSON.stringify({ format, eos, field }),
        encode(rec) {
          const ids = t.encode(stringField(rec, rec.value, field)!);
          return withEos({ inputIds: ids, labels: ids.slice() }, eos);
        },
      };
    }
    case 'pretokenized': {
      return {
        format, identity: JSON.stringify({ format }),
        encode(rec) {
          const inputIds = intArrayField(rec, 'input_ids');
          if (inputIds.length === 0) throw new DataError(rec.where, 'field "input_ids" is empty');
          if (rec.value.labels === undefined || rec.value.labels === null) return { inputIds, labels: inputIds.slice() };
          const labels = intArrayField(rec, 'labels');
          if (labels.length !== inputIds.length) {
            throw new DataError(rec.where, `field "labels" has ${labels.length} entries but "input_ids" has ${inputIds.length} (labels align with input_ids; the model shifts them)`);
          }
          return { inputIds, labels };
        },
      };
    }
    case 'alpaca': {
      const t = needTokenizer(format, tok), eos = needEos(format, t, opts.eosId);
      return {
        format, identity: JSON.stringify({ format, eos, prompt: ALPACA_WITH_INPUT + ALPACA_NO_INPUT }),
        encode(rec) {
          const instruction = stringField(rec, rec.value, 'instruction')!;
          const input = stringField(rec, rec.value, 'input', { optional: true });
          const output = stringField(rec, rec.value, 'output')!;
          const prompt = alpacaPrompt(instruction, input);
          const codec = { encode: (s: string) => t.encode(s), decode: (ids: readonly number[]) => t.decode(ids) };
          return withEos(encodeLossSpans(codec, prompt + output, [{ before: prompt, through: null }]), eos);
        },
      };
    }
    case 'chat':
    case 'sharegpt': {
      const t = needTokenizer(format, tok), template = chatTemplateSource(t, opts.chatTemplate);
      const messages = format === 'chat' ? chatMessages : sharegptMessages;
      return {
        format, identity: JSON.stringify({ format, template }),
        encode: (rec) => encodeChat(t, template, messages(rec), rec.where),
      };
    }
    default:
      throw new Error(`data: unknown format ${JSON.stringify(format)}; expected auto, ${FORMATS.join(', ')}`);
  }
}
