// `kestrel export --ollama`: an Ollama Modelfile next to the GGUF. Ollama's TEMPLATE is a Go
// template, not Jinja, and its detection of a GGUF's tokenizer.chat_template matches only known
// templates (ollama/ollama#6371), so the common turn formats are written out here, picked by the
// turn-marker tokens the vocabulary holds (detectChatTemplate); an unknown format gets no TEMPLATE
// and a comment saying so. PARAMETER stop lists the end-of-turn token and EOS.
import { basename } from 'node:path';
import { detectChatTemplate } from '../tokenizer/detect_template.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';

/** Ollama Go templates over .Messages for the turn formats Kestrel knows. */
const OLLAMA_TEMPLATES: Record<string, string> = {
  chatml: '{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n',
  llama3: '{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n',
  gemma: '{{- range .Messages }}<start_of_turn>{{ if eq .Role "assistant" }}model{{ else }}{{ .Role }}{{ end }}\n{{ .Content }}<end_of_turn>\n{{ end }}<start_of_turn>model\n',
  phi3: '{{- range .Messages }}<|{{ .Role }}|>\n{{ .Content }}<|end|>\n{{ end }}<|assistant|>\n',
  zephyr: '{{- range .Messages }}<|{{ .Role }}|>\n{{ .Content }}</s>\n{{ end }}<|assistant|>\n',
  mistral: '{{- range .Messages }}{{ if eq .Role "user" }}[INST] {{ .Content }} [/INST]{{ else if eq .Role "assistant" }}{{ .Content }}</s>{{ end }}{{ end }}',
};

/**
 * The Modelfile text for `gguf` (referenced by its file name, so the two travel together).
 * @example ollamaModelfile('model.gguf', tok, ['<|im_end|>']) // 'FROM ./model.gguf\nTEMPLATE """..."""\nPARAMETER stop "<|im_end|>"\n'
 */
export function ollamaModelfile(gguf: string, tok: Tokenizer | null, stops: readonly string[]): string {
  const lines = [`# written by kestrel export --ollama; use: ollama create NAME -f Modelfile`, `FROM ./${basename(gguf)}`];
  const format = tok && tok.chatTemplate() !== undefined ? detectChatTemplate(tok) : null;
  const template = format ? OLLAMA_TEMPLATES[format] : undefined;
  if (template) lines.push(`# the ${format} turn format, as a Go template (Ollama does not run the Jinja template)`, `TEMPLATE """${template}"""`);
  else lines.push(`# no TEMPLATE: Kestrel has no Go template for this chat format; Ollama falls back to its own detection from tokenizer.chat_template`);
  for (const s of [...new Set(stops)]) lines.push(`PARAMETER stop ${JSON.stringify(s)}`);
  return lines.join('\n') + '\n';
}
