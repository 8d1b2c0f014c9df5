// model_type -> the family that reads its config.json. An unknown type lists the supported ones.
import type { DecoderConfig } from './config.js';
import { gemma, gemma2 } from './families/gemma.js';
import type { Json } from './families/hf_config.js';
import { llama, mistral, mixtral, qwen2, qwen3 } from './families/llama.js';
import { phi3 } from './families/phi3.js';

export const DECODER_FAMILIES: Record<string, (raw: Json, file: string) => DecoderConfig> = {
  llama, mistral, qwen2, qwen3, mixtral, gemma, gemma2, phi3,
};

export function decoderConfig(raw: Json, file: string): DecoderConfig {
  const type = raw.model_type;
  const family = typeof type === 'string' ? DECODER_FAMILIES[type] : undefined;
  if (!family)
    throw new Error(`${file}: model_type ${JSON.stringify(type)} is not supported (supported: ${Object.keys(DECODER_FAMILIES).join(', ')})`);
  return family(raw, file);
}
