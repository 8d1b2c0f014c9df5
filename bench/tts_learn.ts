// Text-to-speech at the scale (issue 19: "espeak-ng speech of a few dozen words"), too long
// for the test suite (test/train/tts.test.ts trains on three): a tiny random Llama learns text ->
// EnCodec tokens (tiny fixture codec, 1.5 kbps) for 30 words in three espeak-ng voices; reports
// the loss on the audio tokens before and after, and for every word the share of its clip's codes
// that greedy generation reproduces (memorising the training clips is the correct answer here).
// Run: node --import tsx bench/tts_learn.ts [--steps 400]
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { espeakToWav } from '../src/audio/espeak.js';
import { readAsrManifest } from '../src/data/asr_manifest.js';
import { generateCodes } from '../src/infer/tts_speak.js';
import { CausalLM } from '../src/models/causal_lm.js';
import { loadEncodec } from '../src/models/encodec.js';
import { loadCausalLM } from '../src/models/load.js';
import { trainTts } from '../src/train/tts.js';
import { encodeAudioCached, ttsPrompt } from '../src/train/tts_data.js';
import { makeTinyLm } from '../test/train/tts_helpers.js';
import { fixture } from '../test/fixtures.js';
import { writeResult } from './lib/report.js';

const WORDS = ['yes', 'no', 'up', 'down', 'left', 'right', 'stop', 'go', 'hello', 'world', 'red', 'green', 'blue', 'black', 'white',
  'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine', 'ten', 'cat', 'dog', 'sun', 'moon', 'tree'];
const VOICES = ['en', 'en+f3', 'en+m3'];

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { steps: { type: 'string', default: '400' } } });
  const steps = Number(values.steps);
  const codecFx = fixture('audio', 'models', 'encodec-tiny-random');
  const whisperFx = fixture('audio', 'models', 'whisper-tiny-random');
  if (codecFx.skip || whisperFx.skip) throw new Error(`fixtures missing: ${codecFx.skip || whisperFx.skip}`);
  const dir = mkdtempSync(join(tmpdir(), 'kestrel-tts-bench-'));
  const speech = join(dir, 'speech');
  mkdirSync(speech);
  const lines = WORDS.map((w, i) => {
    espeakToWav(w, join(speech, `w${i}.wav`), { voice: VOICES[i % VOICES.length] });
    return JSON.stringify({ text: w, audio: `w${i}.wav` });
  });
  writeFileSync(join(speech, 'manifest.jsonl'), lines.join('\n') + '\n');
  const records = await readAsrManifest(join(speech, 'manifest.jsonl'));
  const codec = loadEncodec(codecFx.path);
  const { model, hfConfig, tokenizer } = await loadCausalLM(makeTinyLm(join(dir, 'lm'), whisperFx.path));
  if (!(model instanceof CausalLM) || !tokenizer) throw new Error('the tiny LM did not load as a CausalLM with a tokenizer');
  const out = join(dir, 'run');
  const t0 = performance.now();
  const run = await trainTts(model, hfConfig, tokenizer, codec, records, { output: out, bandwidth: 1.5, steps, lr: 3e-3, batchSize: 6, lora: null });
  const trainS = (performance.now() - t0) / 1e3;
  const perWord: { word: string; codes: number; reproduced: number; framesRight: boolean }[] = [];
  for (const r of records) {
    const want = encodeAudioCached(codec, r.audio, { bandwidth: 1.5, cacheDir: join(out, 'codec_cache') });
    const got = await generateCodes(run.model, ttsPrompt(tokenizer, r.text, run.meta), run.meta, { maxFrames: want.frames + 10 });
    const same = want.codes.filter((c, i) => got.codes[i] === c).length;
    perWord.push({ word: r.text, codes: want.codes.length, reproduced: same, framesRight: got.frames === want.frames });
  }
  const total = perWord.reduce((n, w) => n + w.codes, 0);
  const reproduced = perWord.reduce((n, w) => n + w.reproduced, 0);
  const first = run.losses[0];
  const last = Math.min(...run.losses.slice(-10));
  console.log(`${WORDS.length} words, ${steps} steps in ${trainS.toFixed(0)} s: loss ${first.toFixed(3)} -> ${last.toFixed(3)}; greedy codes reproduced ${reproduced}/${total} (${((100 * reproduced) / total).toFixed(1)}%), clip length right for ${perWord.filter((w) => w.framesRight).length}/${perWord.length} words`);
  const path = writeResult('tts_learn', { words: WORDS.length, voices: VOICES, steps, batchSize: 6, lr: 3e-3, trainSeconds: trainS, firstLoss: first, lastLoss: last, reproduced, totalCodes: total, perWord });
  console.log(`wrote ${path}`);
  run.model.dispose();
  codec.dispose();
}

await main();
