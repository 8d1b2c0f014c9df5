// Suggested sampling settings for a model folder, each with the reason for its value: the folder's
// own generation_config.json first (its authors' choice), then the settings Unsloth documents for
// the family (Qwen3 and Gemma 3), then a plain default by whether it is an instruct model (a chat
// template) or a base model. The Studio shows them and applies them with one click.
import type { SuggestedParam } from './studio_types.js';

type Family = Partial<Record<'temperature' | 'top_p' | 'top_k' | 'min_p', number>>;

/** Unsloth's documented inference settings per model family (its Qwen3 and Gemma 3 guides). */
const FAMILY: Record<string, { settings: Family; source: string }> = {
  qwen3: { settings: { temperature: 0.6, top_p: 0.95, top_k: 20, min_p: 0 }, source: "Unsloth's Qwen3 settings (thinking mode)" },
  gemma3: { settings: { temperature: 1.0, top_p: 0.95, top_k: 64, min_p: 0 }, source: "Unsloth's Gemma 3 settings" },
  gemma3_text: { settings: { temperature: 1.0, top_p: 0.95, top_k: 64, min_p: 0 }, source: "Unsloth's Gemma 3 settings" },
};

const KEYS = ['temperature', 'top_p', 'top_k', 'min_p', 'repetition_penalty'] as const;

/**
 * @example suggestParams('llama', { temperature: 0.6 }, true)
 * // [{ name: 'temperature', value: 0.6, reason: 'generation_config.json' }, { name: 'top_p', value: 0.95, reason: ... }]
 */
export function suggestParams(family: string, generationConfig: Record<string, unknown>, instruct: boolean): SuggestedParam[] {
  const out: SuggestedParam[] = [];
  const fam = FAMILY[family];
  // a generation_config.json that sets do_sample false asks for greedy decoding
  const greedy = generationConfig.do_sample === false;
  for (const name of KEYS) {
    const own = generationConfig[name];
    if (name === 'temperature' && greedy) out.push({ name, value: 0, reason: 'generation_config.json sets do_sample false (greedy)' });
    else if (typeof own === 'number') out.push({ name, value: own, reason: 'generation_config.json' });
    else if (fam?.settings[name as keyof Family] !== undefined) out.push({ name, value: fam.settings[name as keyof Family]!, reason: fam.source });
    else if (name === 'temperature') out.push({ name, value: instruct ? 0.7 : 1.0, reason: instruct ? 'an instruct model (it has a chat template): a moderate chat temperature' : 'a base model (no chat template): sample its distribution as trained' });
    else if (name === 'top_p') out.push({ name, value: 0.95, reason: 'trims the unlikely tail without changing typical text' });
  }
  return out;
}
