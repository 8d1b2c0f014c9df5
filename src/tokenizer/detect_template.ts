// Picks a built-in chat template for a checkpoint that ships none: first from the turn-marker
// tokens its vocabulary holds (they are unambiguous), then from config.json's model_type.
// Returns null when neither says anything (a base model: the caller chooses).
import type { BuiltinTemplateName } from './builtin_templates.js';
import type { Tokenizer } from './tokenizer.js';

/** Vocabulary markers, most specific first: [tokens that must all be single tokens, template]. */
const BY_TOKENS: readonly [readonly string[], BuiltinTemplateName][] = [
  [['<|start_header_id|>', '<|end_header_id|>'], 'llama3'],
  [['<|im_start|>', '<|im_end|>'], 'chatml'],
  [['<start_of_turn>', '<end_of_turn>'], 'gemma'],
  [['<|user|>', '<|assistant|>', '<|end|>'], 'phi3'],
  [['<|user|>', '<|assistant|>'], 'zephyr'],
  [['[INST]', '[/INST]'], 'mistral'],
];

/** model_type (config.json) -> template, for vocabularies without turn markers. */
const BY_MODEL_TYPE: Readonly<Record<string, BuiltinTemplateName>> = {
  llama: 'llama2', mistral: 'mistral', mixtral: 'mistral', gemma: 'gemma', gemma2: 'gemma', gemma3: 'gemma',
  gemma3_text: 'gemma', phi3: 'phi3', qwen2: 'chatml', qwen2_moe: 'chatml', qwen3: 'chatml', qwen3_moe: 'chatml',
};

/**
 * The built-in template that fits a tokenizer (and model_type), or null when nothing identifies one.
 * @example
 * detectChatTemplate(await loadTokenizer('models/qwen2'), 'qwen2') // 'chatml'
 */
export function detectChatTemplate(
  tokenizer: Pick<Tokenizer, 'convertTokensToIds' | 'bosToken'>, modelType?: string,
): BuiltinTemplateName | null {
  for (const [tokens, name] of BY_TOKENS) {
    if (tokenizer.convertTokensToIds(tokens).every((id) => id !== undefined)) return name;
  }
  if (modelType === undefined) return null;
  const byType = BY_MODEL_TYPE[modelType];
  // A Llama-architecture model with a Llama-3 vocabulary was caught above; one without the Llama 2
  // <s> token (e.g. a GPT-style vocab on a Llama body) has no known chat format.
  if (byType === 'llama2' && tokenizer.bosToken !== '<s>') return null;
  return byType ?? null;
}
