// Public surface of src/tokenizer: loading a model folder's tokenizer and rendering chat templates.
export { Tokenizer, type TokenizerSource, type EncodeOptions, type DecodeOptions } from './tokenizer.js';
export { loadTokenizer, type LoadTokenizerOptions } from './load.js';
export { applyChatTemplate, renderChatTemplate, TemplateError, TemplateLimitError, type ChatMessage, type ChatTemplateOptions } from './chat_template.js';
export { DEFAULT_TEMPLATE_LIMITS, type TemplateLimits } from './template_limits.js';
export { detectChatTemplate } from './detect_template.js';
export { BUILTIN_TEMPLATES, type BuiltinTemplateName } from './builtin_templates.js';
export type { AddedTokenSpec, NamedTemplate } from './tokenizer_config.js';
export { renderChat, type RenderChatOptions } from './render_chat.js';
