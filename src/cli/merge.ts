// `kestrel merge --model DIR --adapter DIR --out DIR [--dtype fp32|bf16|fp16]`: folds a LoRA
// adapter into its base and writes a plain HF folder (tokenizer files copied along).
import { copyFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { mergeLora } from '../lora/peft.js';
import { loadCausalLM, savePretrained } from '../models/load.js';
import { parseFlags } from './flags.js';

const DTYPES = { fp32: 'float32', bf16: 'bfloat16', fp16: 'float16' } as const;

/** Copies the tokenizer and chat-template files a model folder has into another folder. */
export function copyTokenizerFiles(from: string, to: string): void {
  for (const f of ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'vocab.json', 'merges.txt', 'tokenizer.model', 'vocab.txt', 'chat_template.jinja'])
    if (existsSync(join(from, f))) copyFileSync(join(from, f), join(to, f));
}

export async function mergeCommand(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, { model: { type: 'string' }, adapter: { type: 'string' }, out: { type: 'string' }, dtype: { type: 'string', default: 'fp32' } });
  if (!values.model || !values.adapter || !values.out) throw new Error('--model DIR, --adapter DIR and --out DIR are required');
  const dtype = DTYPES[values.dtype as keyof typeof DTYPES];
  if (!dtype) throw new Error(`--dtype must be fp32, bf16 or fp16, got '${values.dtype}'`);
  const p = await loadCausalLM(values.model, { adapter: values.adapter });
  const n = mergeLora(p.model);
  if (dtype !== 'float32') p.model.to(dtype);
  savePretrained(values.out, { model: p.model, hfConfig: { ...p.hfConfig, torch_dtype: dtype }, generationConfig: p.generationConfig });
  copyTokenizerFiles(values.model, values.out);
  process.stdout.write(`merged ${n} adapter layers into ${values.out} (${dtype})\n`);
  p.model.dispose();
  return 0;
}
