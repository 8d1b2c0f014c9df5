// Prompt-only data for the RL methods (GRPO; PPO's rollouts): {prompt} as text or as chat
// messages (rendered with the template and its generation prompt), with every other field of the
// record kept for the reward functions (an "answer" to check, a test to run).
import type { BatchOptions } from '../data/dataset.js';
import { BadLines, DataError } from '../data/errors.js';
import { chatMessages } from '../data/chat.js';
import { checkTokenIds } from '../data/example.js';
import { stringField } from '../data/fields.js';
import { listDataFiles, readRecords } from '../data/readers.js';
import { BUILTIN_TEMPLATES, type Tokenizer, detectChatTemplate } from '../tokenizer/index.js';
import { indexBatches } from '../preference/pair_dataset.js';
import type { ScoredRollout } from './grpo_step.js';

export interface PromptExample {
  /** the prompt's token ids (chat: rendered with the generation prompt) */
  ids: number[];
  /** the prompt as the model sees it (text) */
  text: string;
  /** the whole record, for the reward functions */
  record: Readonly<Record<string, unknown>>;
}

/** A batch of prompts; a step's prepare() adds the scored rollout. */
export interface PromptBatch {
  prompts: PromptExample[];
  scored?: ScoredRollout;
}

/** Prompts with seeded, resumable batches (the Trainer's BatchSource). */
export class PromptDataset {
  constructor(readonly examples: readonly PromptExample[], readonly seed: number) {}
  get length(): number {
    return this.examples.length;
  }
  *batches(opts: BatchOptions): Generator<PromptBatch> {
    for (const indices of indexBatches(this.length, this.seed, opts, 'PromptDataset')) yield { prompts: indices.map((i) => this.examples[i]) };
  }
}

export interface LoadPromptOptions {
  tokenizer: Tokenizer;
  chatTemplate?: string;
  /** longer prompts are bad records (generation needs room after them) */
  maxPromptLength: number;
  seed?: number;
  skipBadLines?: boolean;
  vocabSize?: number;
}

/**
 * Reads {prompt, ...} records; a message-list prompt goes through the chat template.
 * @example const prompts = await loadPromptData('math.jsonl', { tokenizer, maxPromptLength: 256 })
 */
export async function loadPromptData(paths: string | readonly string[], o: LoadPromptOptions): Promise<PromptDataset> {
  const bad = new BadLines(o.skipBadLines === true);
  const tok = o.tokenizer;
  const template = (): string => {
    const t = o.chatTemplate ?? tok.chatTemplate() ?? detectChatTemplate(tok);
    if (!t) throw new Error('prompt data: message-list prompts need a chat template (the tokenizer has none; pass chatTemplate)');
    return Object.hasOwn(BUILTIN_TEMPLATES, t) ? BUILTIN_TEMPLATES[t as keyof typeof BUILTIN_TEMPLATES] : t;
  };
  const out: PromptExample[] = [];
  for (const file of listDataFiles(paths)) {
    for await (const rec of readRecords(file, bad)) {
      const ex = bad.guard(() => {
        const p = rec.value.prompt;
        const text = Array.isArray(p)
          ? tok.applyChatTemplate(chatMessages({ value: { messages: p }, where: rec.where }), { template: template(), addGenerationPrompt: true })
          : stringField(rec, rec.value, 'prompt')!;
        const ids = Array.isArray(p) ? tok.encode(text, { addSpecialTokens: false }) : tok.encode(text);
        if (ids.length === 0) throw new DataError(rec.where, 'field "prompt" encodes to no tokens');
        if (ids.length > o.maxPromptLength) throw new DataError(rec.where, `field "prompt" is ${ids.length} tokens, more than the ${o.maxPromptLength} allowed (raise --max-prompt-length)`);
        checkTokenIds({ inputIds: ids, labels: ids }, rec.where, { vocabSize: o.vocabSize, tokenizer: true });
        return { ids, text, record: rec.value };
      });
      if (ex) out.push(ex);
    }
  }
  if (out.length === 0) throw new Error(`loadPromptData: no usable prompts in ${[paths].flat().join(', ')}${bad.count ? ` (first bad record: ${bad.messages[0]})` : ''}`);
  return new PromptDataset(out, o.seed ?? 0);
}
