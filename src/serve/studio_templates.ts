// The Studio's chat-template page over a model folder: which template the folder uses and where it
// comes from (chat_template.jinja, tokenizer_config.json, or the built-in the vocabulary and
// model_type identify), a preview of a draft rendered for sample messages, and saving a draft into
// tokenizer_config.json after backing up what it replaces.
import { copyFileSync, existsSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { readJson, writeJsonAtomic } from '../io/hf_folder.js';
import { BUILTIN_TEMPLATES, type ChatMessage, type Tokenizer, detectChatTemplate, loadTokenizer } from '../tokenizer/index.js';
import { templateFailure } from '../tokenizer/template_error_line.js';
import { ApiError } from './errors.js';
import type { TemplateInfo, TemplatePreview } from './studio_types.js';

/** Tokenizers by folder: a preview per keystroke must not re-read tokenizer.json. Cleared on save. */
const tokenizers = new Map<string, Promise<Tokenizer>>();

export function tokenizerOf(dir: string): Promise<Tokenizer> {
  let t = tokenizers.get(dir);
  if (!t) {
    t = loadTokenizer(dir).catch((e: Error) => {
      tokenizers.delete(dir);
      throw new ApiError(400, `${dir}: cannot load its tokenizer: ${e.message}`, 'name', 'no_tokenizer');
    });
    tokenizers.set(dir, t);
  }
  return t;
}

const modelType = (dir: string): string => String(readJson(join(dir, 'config.json')).model_type ?? '');

/** The template the folder's chats use now and where it came from. */
export async function templateInfo(dir: string): Promise<TemplateInfo> {
  const tok = await tokenizerOf(dir);
  const own = tok.chatTemplate();
  const specialTokens = tok.allSpecialTokens;
  if (own !== undefined) return { source: existsSync(join(dir, 'chat_template.jinja')) ? 'chat_template.jinja' : 'tokenizer_config.json', template: own, specialTokens };
  // the same choice renderChat makes for a folder without one
  const name = detectChatTemplate(tok, modelType(dir)) ?? 'chatml';
  return { source: `built-in ${name}`, template: BUILTIN_TEMPLATES[name], specialTokens };
}

/** The draft rendered for messages (with the generation prompt), or its error and line. */
export async function previewTemplate(dir: string, template: string, messages: ChatMessage[]): Promise<TemplatePreview> {
  const tok = await tokenizerOf(dir);
  const options = { addGenerationPrompt: true, specialTokens: tok.specialTokensMap };
  const error = templateFailure(template, messages, options);
  if (error) return { error };
  const prompt = tok.applyChatTemplate(messages, { ...options, template });
  return { prompt, tokens: tok.encode(prompt, { addSpecialTokens: false }).length, specialTokens: tok.allSpecialTokens };
}

/**
 * Writes the template into the folder's tokenizer_config.json, first copying the file to
 * tokenizer_config.json.bak-<time>; a chat_template.jinja (which would win over it) is renamed to
 * a backup too. A draft that does not render for the messages is refused with its line.
 */
export async function saveTemplate(dir: string, template: string, messages: ChatMessage[]): Promise<{ file: string; backups: string[] }> {
  const check = await previewTemplate(dir, template, messages);
  if ('error' in check) throw new ApiError(400, `the template does not render (line ${check.error.line}): ${check.error.message}`, 'template', 'template_error');
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const file = join(dir, 'tokenizer_config.json');
  const backups: string[] = [];
  const config = existsSync(file) ? readJson(file) : {};
  if (existsSync(file)) {
    copyFileSync(file, `${file}.bak-${stamp}`);
    backups.push(`tokenizer_config.json.bak-${stamp}`);
  }
  const jinja = join(dir, 'chat_template.jinja');
  if (existsSync(jinja)) {
    renameSync(jinja, `${jinja}.bak-${stamp}`);
    backups.push(`chat_template.jinja.bak-${stamp}`);
  }
  writeJsonAtomic(file, { ...config, chat_template: template });
  tokenizers.delete(dir);
  return { file: 'tokenizer_config.json', backups };
}
