// `kestrel finetune --task asr --model DIR --data manifest.jsonl --output DIR`: Whisper speech
// recognition fine-tuning (train/whisper_asr.ts). Manifest lines {"audio": path, "text": ...}, or a
// .parquet file with a 🤗 datasets Audio column (data/asr_parquet.ts);
// LoRA adapters on every Linear by default (--full trains every weight), optional SpecAugment
// masking, loss per step and WER / CER on the evaluation split in metrics.jsonl. Saves a PEFT
// adapter, or with --full a Whisper folder (weights, config, generation config, tokenizer files).
import { appendFileSync, copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readJson } from '../io/hf_folder.js';
import { readAsrData } from '../data/asr_parquet.js';
import { injectLora, saveAdapter } from '../lora/peft.js';
import { loadWhisper, saveWhisper } from '../models/whisper.js';
import { whisperGenerationConfig } from '../models/whisper_generate.js';
import { loadTokenizer } from '../tokenizer/index.js';
import { type AsrPrompt, disposeExamples, evaluateAsr, prepareAsrExamples, trainAsr } from '../train/whisper_asr.js';
import { numberFlag, parseFlags } from './flags.js';
import { loraFromFlags } from './finetune.js';

const TOKENIZER_FILES = ['vocab.json', 'merges.txt', 'added_tokens.json', 'special_tokens_map.json', 'tokenizer_config.json', 'tokenizer.json', 'normalizer.json', 'preprocessor_config.json'];

export async function finetuneAsrCommand(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, {
    task: { type: 'string' }, model: { type: 'string' }, data: { type: 'string' }, 'eval-data': { type: 'string' }, output: { type: 'string' },
    'max-steps': { type: 'string' }, lr: { type: 'string' }, 'batch-size': { type: 'string' }, 'eval-fraction': { type: 'string' },
    'eval-every': { type: 'string' }, language: { type: 'string', default: 'en' }, 'whisper-task': { type: 'string', default: 'transcribe' },
    'spec-augment': { type: 'boolean', default: false }, seed: { type: 'string' }, full: { type: 'boolean', default: false },
    'lora-r': { type: 'string' }, 'lora-alpha': { type: 'string' }, 'lora-dropout': { type: 'string' }, target: { type: 'string' }, rslora: { type: 'boolean' },
    quiet: { type: 'boolean', default: false },
  });
  for (const f of ['model', 'data', 'output'] as const) if (!values[f]) throw new Error(`--${f} is required for --task asr`);
  const [dir, output] = [values.model!, values.output!];
  const whisperTask = values['whisper-task'];
  if (whisperTask !== 'transcribe' && whisperTask !== 'translate') throw new Error(`--whisper-task must be transcribe or translate, got '${whisperTask}'`);
  const prompt: AsrPrompt = { language: values.language!, task: whisperTask };
  const steps = numberFlag(values, 'max-steps', { int: true, min: 1 }) ?? 100;
  const evalEvery = numberFlag(values, 'eval-every', { int: true, min: 1 }) ?? steps;
  const g = whisperGenerationConfig(readJson(join(dir, 'generation_config.json')), join(dir, 'generation_config.json'));
  const tokenizer = await loadTokenizer(dir);
  const model = loadWhisper(dir);
  const lora = values.full ? null : loraFromFlags(values);
  if (lora) {
    model.requiresGrad_(false);
    injectLora(model, lora);
  }
  const records = await readAsrData(values.data!);
  const fraction = numberFlag(values, 'eval-fraction', { min: 0, below: 1 }) ?? (records.length >= 10 ? 0.1 : 0);
  const nEval = values['eval-data'] ? 0 : Math.floor(records.length * fraction);
  const evalRecords = values['eval-data'] ? await readAsrData(values['eval-data']) : records.slice(records.length - nEval);
  const train = prepareAsrExamples(records.slice(0, records.length - nEval), model, tokenizer, g, prompt);
  const evals = prepareAsrExamples(evalRecords, model, tokenizer, g, prompt);
  mkdirSync(output, { recursive: true });
  const metrics = join(output, 'metrics.jsonl');
  writeFileSync(metrics, '');
  const log = (m: object): void => appendFileSync(metrics, JSON.stringify(m) + '\n');
  const evaluate = (step: number): void => {
    if (!evals.length) return;
    const { wer, cer } = evaluateAsr(model, tokenizer, g, evals, prompt);
    log({ step, eval_wer: wer, eval_cer: cer });
    if (!values.quiet) process.stderr.write(`step ${step}: eval WER ${(100 * wer).toFixed(1)}%, CER ${(100 * cer).toFixed(1)}%\n`);
  };
  try {
    evaluate(0);
    trainAsr(model, train, {
      steps, lr: numberFlag(values, 'lr', { above: 0 }) ?? (lora ? 1e-3 : 1e-4), batchSize: numberFlag(values, 'batch-size', { int: true, min: 1 }) ?? 8,
      specAugment: values['spec-augment'] ? {} : null, seed: numberFlag(values, 'seed', { int: true, min: 0 }) ?? 0,
      onStep: (step, loss) => {
        log({ step, loss });
        if (step % evalEvery === 0) evaluate(step);
      },
    });
    if (lora) saveAdapter(model, output, lora, { baseModel: dir });
    else {
      saveWhisper(output, model, readJson(join(dir, 'config.json')), readJson(join(dir, 'generation_config.json')));
      for (const f of TOKENIZER_FILES) if (existsSync(join(dir, f))) copyFileSync(join(dir, f), join(output, f));
    }
    if (!values.quiet) process.stderr.write(`saved ${lora ? 'the LoRA adapter' : 'the model'} to ${output}\n`);
  } finally {
    disposeExamples(train);
    disposeExamples(evals);
    model.dispose();
  }
  return 0;
}
