// `kestrel speak --model DIR --codec DIR "text" --output out.wav [--temperature T]`: text to speech
// with a folder from `kestrel finetune --task tts` (infer/tts_speak.ts) and its EnCodec codec.
import { saveWav } from '../audio/load.js';
import { CausalLM } from '../models/causal_lm.js';
import { loadEncodec } from '../models/encodec.js';
import { loadCausalLM } from '../models/load.js';
import { decodeCodes, generateCodes } from '../infer/tts_speak.js';
import { ttsPrompt } from '../train/tts_data.js';
import { readTtsMeta } from '../train/tts_model.js';
import { join } from 'node:path';
import { numberFlag, parseFlags } from './flags.js';

export async function speakCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(argv, {
    model: { type: 'string' }, codec: { type: 'string' }, output: { type: 'string' }, temperature: { type: 'string' },
    seed: { type: 'string' }, 'max-seconds': { type: 'string' },
  }, { positionals: true });
  for (const f of ['model', 'codec', 'output'] as const) if (!values[f]) throw new Error(`--${f} is required`);
  if (positionals.length !== 1) throw new Error(`give the text to speak as one argument (quote it), got ${positionals.length}`);
  const { model, hfConfig, tokenizer } = await loadCausalLM(values.model!);
  const codec = loadEncodec(values.codec!);
  try {
    const meta = readTtsMeta(hfConfig, join(values.model!, 'config.json'));
    if (!meta) throw new Error(`${join(values.model!, 'config.json')}: no kestrel_tts section (train the model with kestrel finetune --task tts)`);
    if (!(model instanceof CausalLM) || !tokenizer) throw new Error(`${values.model}: needs a Llama-family model with its tokenizer`);
    if (meta.samplingRate !== codec.config.samplingRate || meta.codebookSize !== codec.config.codebookSize)
      throw new Error(`--codec ${values.codec}: ${codec.config.codebookSize} codes at ${codec.config.samplingRate} Hz, but the model was trained on ${meta.codebookSize} at ${meta.samplingRate} Hz`);
    const maxFrames = Math.ceil((numberFlag(values, 'max-seconds', { above: 0 }) ?? 10) * codec.frameRate);
    const { codes, frames } = await generateCodes(model, ttsPrompt(tokenizer, positionals[0], meta), meta, {
      maxFrames, temperature: numberFlag(values, 'temperature', { min: 0 }) ?? 0, seed: numberFlag(values, 'seed', { int: true, min: 0 }),
    });
    const wave = decodeCodes(codec, codes, frames, meta);
    saveWav(values.output!, wave, codec.config.samplingRate);
    wave.dispose();
    process.stderr.write(`${values.output}: ${frames} frames, ${(frames / codec.frameRate).toFixed(2)} s\n`);
  } finally {
    model.dispose();
    codec.dispose();
  }
  return 0;
}
