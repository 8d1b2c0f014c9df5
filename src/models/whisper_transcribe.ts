// Speech to text with a Whisper model: 16 kHz mono samples in consecutive 30 s windows (each
// decoded greedily on its own with the same prompt), the generated tokens of every window joined;
// with timestamps, the timed segments of every window offset by the window's start.
// Timestamp-guided seeking (openai-whisper's long-form loop) is not done: a word cut at a window
// edge is transcribed in pieces.
import { narrow, reshape } from '../ops/view.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { whisperLogMel } from '../audio/whisper_features.js';
import type { WhisperForConditionalGeneration } from './whisper.js';
import { type WhisperGenerateOptions, type WhisperGenerationConfig, timestampRules, whisperGenerate } from './whisper_generate.js';
import { type TimedSegment, timestampSegments } from './whisper_timestamps.js';

const WINDOW = 480000; // 30 s at 16 kHz

export interface Transcription {
  /** generated ids after each window's prompt, <|endoftext|> removed, windows joined */
  tokens: number[];
  windows: number;
  /** with timestamps: each <|a|> text <|b|> pair, in seconds from the start of the audio */
  segments?: TimedSegment[];
}

/**
 * @example transcribe(model, loadAudio('a.flac', { sampleRate: 16000, mono: true }).samples.reshape([-1]), genConfig, { language: 'en' })
 */
export function transcribe(model: WhisperForConditionalGeneration, samples: Tensor, g: WhisperGenerationConfig, opts: Omit<WhisperGenerateOptions, 'returnScores'> = {}): Transcription {
  if (samples.ndim !== 1) throw new Error(`transcribe: samples must be 16 kHz mono [N], got [${samples.shape.join(', ')}]`);
  const N = samples.shape[0];
  const windows = Math.max(1, Math.ceil(N / WINDOW));
  const tokens: number[] = [];
  const begin = opts.timestamps ? timestampRules(g, model.config.vocabSize).timestampBegin : null;
  const segments: TimedSegment[] = [];
  for (let w = 0; w < windows; w++) {
    const features = tidy(() => {
      const piece = narrow(samples, 0, w * WINDOW, Math.min(WINDOW, N - w * WINDOW));
      return reshape(whisperLogMel(piece, { nMels: model.config.numMelBins }), [1, model.config.numMelBins, -1]);
    });
    try {
      const ids = whisperGenerate(model, features, g, opts).tokens.filter((id) => id !== g.eosTokenId);
      tokens.push(...ids);
      if (begin !== null) segments.push(...timestampSegments(ids, begin, (w * WINDOW) / 16000));
    } finally {
      features.dispose();
    }
  }
  return begin !== null ? { tokens, windows, segments } : { tokens, windows };
}
