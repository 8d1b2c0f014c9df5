// `kestrel finetune --task tts --model LM --codec DIR --data manifest.jsonl --output DIR`:
// text-to-speech fine-tuning of a causal LM over EnCodec tokens (train/tts.ts). Manifest lines
// {"text": ..., "audio": path}; LoRA (plus trainable embedding and head) by default, --full trains
// every weight; the output is a merged HF folder (tokenizer copied) that `kestrel speak` reads and
// that this command takes again as --model to train further.
import { copyFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { readAsrManifest } from '../data/asr_manifest.js';
import { CausalLM } from '../models/causal_lm.js';
import { loadEncodec } from '../models/encodec.js';
import { loadCausalLM } from '../models/load.js';
import { trainTts } from '../train/tts.js';
import { numberFlag, parseFlags } from './flags.js';
import { loraFromFlags } from './finetune.js';

const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'vocab.json', 'merges.txt', 'added_tokens.json', 'tokenizer.model'];

export async function finetuneTtsCommand(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, {
    task: { type: 'string' }, model: { type: 'string' }, codec: { type: 'string' }, data: { type: 'string' }, output: { type: 'string' },
    bandwidth: { type: 'string' }, 'max-steps': { type: 'string' }, lr: { type: 'string' }, 'batch-size': { type: 'string' }, seed: { type: 'string' },
    full: { type: 'boolean', default: false }, 'lora-r': { type: 'string' }, 'lora-alpha': { type: 'string' }, 'lora-dropout': { type: 'string' },
    target: { type: 'string' }, rslora: { type: 'boolean' }, quiet: { type: 'boolean', default: false },
  });
  for (const f of ['model', 'codec', 'data', 'output'] as const) if (!values[f]) throw new Error(`--${f} is required for --task tts`);
  const [dir, output] = [values.model!, values.output!];
  const codec = loadEncodec(values.codec!);
  const bws = codec.config.targetBandwidths;
  const bandwidth = numberFlag(values, 'bandwidth', { above: 0 }) ?? bws[0];
  const { model, hfConfig, tokenizer } = await loadCausalLM(dir);
  try {
    if (!(model instanceof CausalLM)) throw new Error(`${dir}: --task tts needs a Llama-family model (decoder.ts), not ${model.config.modelType}`);
    if (!tokenizer) throw new Error(`${dir}: no tokenizer files (the text needs one)`);
    const records = await readAsrManifest(values.data!);
    const lora = values.full ? null : loraFromFlags(values);
    const run = await trainTts(model, hfConfig, tokenizer, codec, records, {
      output, bandwidth, lora, steps: numberFlag(values, 'max-steps', { int: true, min: 1 }) ?? 200,
      lr: numberFlag(values, 'lr', { above: 0 }) ?? (lora ? 2e-3 : 1e-3), batchSize: numberFlag(values, 'batch-size', { int: true, min: 1 }) ?? 4,
      seed: numberFlag(values, 'seed', { int: true, min: 0 }) ?? 0, progress: !values.quiet,
    });
    run.model.dispose();
    for (const f of TOKENIZER_FILES) if (existsSync(join(dir, f))) copyFileSync(join(dir, f), join(output, f));
    if (!values.quiet) process.stderr.write(`saved the text-to-speech model (${run.meta.codebooks} codebooks at ${bandwidth} kbps) to ${output}\n`);
  } finally {
    codec.dispose();
  }
  return 0;
}
