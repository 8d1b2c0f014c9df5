// `kestrel transcribe --model DIR FILE... [--language en] [--task transcribe|translate] [--timestamps] [--json]`:
// speech to text with a Whisper folder (models/whisper_transcribe.ts); with --json one line per
// file: {"file", "text", "tokens"} (tokens = the generated ids after the prompt), and with
// --timestamps "segments": [{"start", "end", "text"}] (seconds); as text, one "[start -> end] text" line each.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { loadAudio } from '../audio/load.js';
import { readJson } from '../io/hf_folder.js';
import { loadWhisper } from '../models/whisper.js';
import { whisperGenerationConfig } from '../models/whisper_generate.js';
import { transcribe } from '../models/whisper_transcribe.js';
import { loadTokenizer } from '../tokenizer/index.js';
import { numberFlag, parseFlags } from './flags.js';

export async function transcribeCommand(argv: string[]): Promise<number> {
  const { values, positionals: files } = parseFlags(argv, {
    model: { type: 'string' }, language: { type: 'string' }, task: { type: 'string' }, 'max-new-tokens': { type: 'string' },
    json: { type: 'boolean', default: false }, timestamps: { type: 'boolean', default: false },
  }, { positionals: true });
  if (!values.model) throw new Error('--model DIR is required (a Whisper folder)');
  if (!files.length) throw new Error('give at least one audio file');
  const task = values.task;
  if (task !== undefined && task !== 'transcribe' && task !== 'translate') throw new Error(`--task must be transcribe or translate, got '${task}'`);
  const genFile = join(values.model, 'generation_config.json');
  if (!existsSync(genFile)) throw new Error(`${genFile}: not found (Whisper generation needs its prompt and suppressed tokens)`);
  const g = whisperGenerationConfig(readJson(genFile), genFile);
  const model = loadWhisper(values.model);
  const tokenizer = await loadTokenizer(values.model);
  const maxNewTokens = numberFlag(values, 'max-new-tokens', { int: true, min: 0 });
  try {
    for (const file of files) {
      const { samples } = loadAudio(file, { sampleRate: 16000, mono: true });
      const r = transcribe(model, samples.reshape([-1]), g, { language: values.language, task, maxNewTokens, timestamps: values.timestamps });
      samples.dispose();
      // timestamp ids are not text (transformers' decode drops them unless decode_with_timestamps)
      const decode = (ids: number[]): string => tokenizer.decode(ids.filter((id) => id < model.config.vocabSize && (g.noTimestampsTokenId === null || id <= g.noTimestampsTokenId)), { skipSpecialTokens: true });
      const text = decode(r.tokens);
      const segments = r.segments?.map((s) => ({ start: s.start, end: s.end, text: decode(s.tokens) }));
      if (values.json) process.stdout.write(JSON.stringify({ file, text, tokens: r.tokens, ...(segments ? { segments } : {}) }) + '\n');
      else if (segments) for (const s of segments) process.stdout.write(`${file}: [${s.start.toFixed(2)} -> ${s.end.toFixed(2)}] ${s.text.trim()}\n`);
      else process.stdout.write(`${file}: ${text}\n`);
    }
  } finally {
    model.dispose();
  }
  return 0;
}
