// `kestrel export --model DIR [--adapter DIR] --format gguf --type f32|f16|bf16|q8_0|q4_0|q4_k_m
// --out FILE.gguf [--ollama] [--tokenizer DIR] [--quiet]`: one GGUF file for llama.cpp / Ollama, the
// adapter merged first. Says what the EOS/template check found before the file is written.
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { EXPORT_TYPES, type ExportType } from '../gguf/constants.js';
import { exportGguf } from '../gguf/export.js';
import { ollamaModelfile } from '../gguf/modelfile.js';
import { mergeLora } from '../lora/peft.js';
import { loadCausalLM } from '../models/load.js';
import { progressTo } from './embed.js';
import { EXPORT_DEFAULTS } from './defaults.js';
import { parseFlags } from './flags.js';

export async function exportCommand(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, {
    model: { type: 'string' }, adapter: { type: 'string' }, tokenizer: { type: 'string' }, out: { type: 'string' },
    format: { type: 'string', default: EXPORT_DEFAULTS.format }, type: { type: 'string', default: EXPORT_DEFAULTS.type },
    ollama: { type: 'boolean', default: false }, quiet: { type: 'boolean', default: false },
  });
  if (!values.model || !values.out) throw new Error('--model DIR and --out FILE.gguf are required');
  if (values.format !== 'gguf') throw new Error(`--format must be gguf (the only export format), got '${values.format}'`);
  if (!Object.hasOwn(EXPORT_TYPES, values.type)) throw new Error(`--type must be one of ${Object.keys(EXPORT_TYPES).join(', ')}, got '${values.type}'`);
  const p = await loadCausalLM(values.model, { adapter: values.adapter, tokenizer: values.tokenizer });
  try {
    if (!p.tokenizer) throw new Error(`${values.model} has no tokenizer, and a GGUF file must carry one; pass --tokenizer DIR`);
    if (values.adapter) process.stderr.write(`merged ${mergeLora(p.model)} adapter layers from ${values.adapter}\n`);
    const gc = p.generationConfig?.eos_token_id;
    const stopIds = (Array.isArray(gc) ? gc : [gc]).filter((x): x is number => typeof x === 'number');
    const r = exportGguf(p.model, p.tokenizer, values.out, {
      type: values.type as ExportType, dir: values.tokenizer ?? values.model, stopIds, onProgress: progressTo('bytes', values.quiet),
    });
    process.stderr.write(`${r.eos.ok ? 'EOS check' : 'WARNING (EOS)'}: ${r.eos.message}\n`);
    for (const w of r.warnings) process.stderr.write(`WARNING: ${w}\n`);
    const types = Object.entries(r.types).map(([t, n]) => `${n} ${t}`).join(', ');
    process.stdout.write(`wrote ${r.file} (${r.arch}, ${values.type}: ${types})\n`);
    if (values.ollama) {
      const file = join(dirname(values.out), 'Modelfile');
      const stops = [r.eos.endOfTurn?.token, p.tokenizer.eosToken].filter((s): s is string => !!s);
      writeFileSync(file, ollamaModelfile(values.out, p.tokenizer, stops));
      process.stdout.write(`wrote ${file} (ollama create NAME -f ${file})\n`);
    }
    return 0;
  } finally {
    p.model.dispose();
  }
}
