// The prompt text of a conversation for generation: a forced built-in template, else the model
// folder's chat template, else the built-in one the vocabulary or model_type identifies (chatml
// as the last resort). Shared by `kestrel chat` and the server's /v1/chat/completions.
import { applyChatTemplate, type ChatMessage } from './chat_template.js';
import { detectChatTemplate } from './detect_template.js';
import type { Tokenizer } from './tokenizer.js';

export interface RenderChatOptions {
  /** a built-in template name that overrides the folder's */
  template?: string;
  /** tool definitions, passed to templates that take them (OpenAI's `tools`) */
  tools?: readonly unknown[] | null;
}

/**
 * @example renderChat(tok, 'llama', [{ role: 'user', content: 'Hi' }]) // '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n'
 */
export function renderChat(tokenizer: Tokenizer, modelType: string, messages: ChatMessage[], opts: RenderChatOptions = {}): string {
  const tools = opts.tools ?? null;
  if (!opts.template && tokenizer.chatTemplate()) return tokenizer.applyChatTemplate(messages, { addGenerationPrompt: true, tools });
  const name = opts.template ?? detectChatTemplate(tokenizer, modelType) ?? 'chatml';
  return applyChatTemplate(messages, { template: name, addGenerationPrompt: true, tools, bos_token: tokenizer.bosToken ?? '', eos_token: tokenizer.eosToken ?? '' });
}
