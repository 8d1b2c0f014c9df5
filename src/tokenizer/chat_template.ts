// Chat templates rendered with @huggingface/jinja (what transformers.js uses) the way transformers'
// apply_chat_template(tokenize=False) renders them: trim_blocks + lstrip_blocks, the tokenizer's
// special_tokens_map as variables, messages / tools / documents / add_generation_prompt, and
// raise_exception(msg) surfacing as a TemplateError carrying the template's own message. Renders run
// within limits (template_limits.ts) so a runaway template fails fast instead of hanging.
// Reference: transformers tokenization_utils_base.py apply_chat_template / _compile_jinja_template.
import { Template } from '@huggingface/jinja';
import { BUILTIN_TEMPLATES, type BuiltinTemplateName } from './builtin_templates.js';
import { DEFAULT_TEMPLATE_LIMITS, LimitExceeded, type TemplateLimits, renderBounded } from './template_limits.js';

export interface ChatMessage {
  readonly role: string;
  readonly content: string;
  readonly [field: string]: unknown;
}

export interface ChatTemplateOptions {
  /** Jinja source, or a built-in template name (chatml, llama3, llama2, mistral, gemma, phi3, zephyr, alpaca) */
  readonly template?: string;
  readonly addGenerationPrompt?: boolean;
  readonly tools?: readonly unknown[] | null;
  readonly documents?: readonly unknown[] | null;
  /** bos_token, eos_token, ... (a Tokenizer passes its special_tokens_map) */
  readonly specialTokens?: Readonly<Record<string, string | string[]>>;
  /** bounds on one render (default DEFAULT_TEMPLATE_LIMITS); not a template variable */
  readonly limits?: Partial<TemplateLimits>;
  /** any further template variables (date_string, enable_thinking, ...) */
  readonly [variable: string]: unknown;
}

/** A template's raise_exception(...) or a rendering failure; message is the template's text. */
export class TemplateError extends Error {
  override readonly name = 'TemplateError';
}

/** A render that ran past a limit: a fault of the template (it would fail on every input), not of one input. */
export class TemplateLimitError extends TemplateError {}

const compiled = new Map<string, Template>();

function compile(source: string): Template {
  let t = compiled.get(source);
  if (t === undefined) {
    try {
      t = new Template(source);
    } catch (e) {
      throw new TemplateError(`chat template does not parse: ${(e as Error).message}`);
    }
    // Templates come from a handful of files per process; keep the cache small anyway.
    if (compiled.size > 64) compiled.clear();
    compiled.set(source, t);
  }
  return t;
}

function resolveTemplate(template: string): string {
  return Object.hasOwn(BUILTIN_TEMPLATES, template) ? BUILTIN_TEMPLATES[template as BuiltinTemplateName] : template;
}

/** A built-in template's name, else the start of the source: enough to tell which template failed. */
function templateLabel(template: string): string {
  return JSON.stringify(Object.hasOwn(BUILTIN_TEMPLATES, template) || template.length <= 48 ? template : `${template.slice(0, 48)}...`);
}

/**
 * Renders a conversation with a chat template (the jinja source, or a built-in name).
 * @example
 * renderChatTemplate([{ role: 'user', content: 'Hi' }], { template: 'chatml', addGenerationPrompt: true })
 * // '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n'
 */
export function renderChatTemplate(messages: readonly ChatMessage[], options: ChatTemplateOptions & { template: string }): string {
  const { template, addGenerationPrompt = false, tools = null, documents = null, specialTokens = {}, limits, ...extra } = options;
  if (!Array.isArray(messages)) throw new TemplateError('messages must be a list of {role, content}');
  const vars: Record<string, unknown> = {
    ...specialTokens,
    ...extra,
    messages,
    tools,
    documents,
    add_generation_prompt: addGenerationPrompt,
  };
  // @huggingface/jinja's own raise_exception(msg) throws Error(msg) (it cannot be overridden: globals
  // are declared before render's variables); like transformers, every failure becomes a TemplateError
  // with the same message, so the template's text reaches the caller unchanged.
  const compiledTemplate = compile(resolveTemplate(template));
  try {
    return renderBounded(compiledTemplate, vars, { ...DEFAULT_TEMPLATE_LIMITS, ...limits });
  } catch (e) {
    if (e instanceof LimitExceeded) throw new TemplateLimitError(`chat template ${templateLabel(template)}: exceeded ${e.message}`);
    throw new TemplateError((e as Error).message);
  }
}

/**
 * transformers-style entry point: the template comes from options.template (source or built-in name).
 * A Tokenizer's own applyChatTemplate fills in its template and special tokens.
 * @example
 * applyChatTemplate(messages, { template: 'llama3', addGenerationPrompt: true, specialTokens: { bos_token: '<|begin_of_text|>' } })
 */
export function applyChatTemplate(messages: readonly ChatMessage[], options: ChatTemplateOptions): string {
  if (options.template === undefined) {
    throw new TemplateError('applyChatTemplate: no template given (pass { template }, or call tokenizer.applyChatTemplate to use the model folder\'s)');
  }
  return renderChatTemplate(messages, { ...options, template: options.template });
}
