// loadAudio / saveWav: files to channel-first float32 tensors [channels, frames] and back. WAV is
// read by the project's own reader (wav.ts); any other container goes through ffmpeg (ffmpeg.ts).
// Optional mono mixdown (the mean of the channels) and resampling (resample.ts, torchaudio's).
import { closeSync, mkdtempSync, openSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { extname, join } from 'node:path';
import { tensor } from '../ops/creation.js';
import { mean } from '../ops/reduce.js';
import { contiguous } from '../ops/view.js';
import { checkNumber } from '../io/check.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { decodeWithFfmpeg } from './ffmpeg.js';
import { type ResampleOptions, resample } from './resample.js';
import { type DecodedAudio, type WavWriteOptions, isRiffWave, parseWav, readWav, writeWavFile } from './wav.js';

export interface LoadAudioOptions {
  /** resample to this rate (Hz); default the file's own */
  sampleRate?: number;
  /** mix the channels down to one by their mean (default false) */
  mono?: boolean;
  /** resampling filter settings (torchaudio.functional.resample's) */
  resample?: ResampleOptions;
  /** backend of the returned tensor (default: the default backend) */
  backend?: string;
}

export interface LoadedAudio {
  /** float32 [channels, frames] in [-1, 1] */
  samples: Tensor;
  sampleRate: number;
}

function startsAsWav(path: string): boolean {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new Error(`${path}: cannot open (${(e as Error).message})`);
  }
  try {
    const head = new Uint8Array(12);
    return isRiffWave(head.subarray(0, readSync(fd, head, 0, 12, 0)));
  } finally {
    closeSync(fd);
  }
}

/** Decodes a file to planar float32: RIFF/WAVE by its bytes (or a .wav name) here, the rest by ffmpeg. */
export function decodeAudioFile(path: string): DecodedAudio {
  // a .wav name without a RIFF header is reported by the WAV reader, not handed to ffmpeg
  return startsAsWav(path) || extname(path).toLowerCase() === '.wav' ? readWav(path) : decodeWithFfmpeg(path);
}

/**
 * Decodes a file's bytes held in memory (a 🤗 datasets Audio value): RIFF/WAVE here, any other
 * container by ffmpeg from a private temporary file (ffprobe needs a seekable input). `name`
 * (the dataset's path, or where the bytes came from) is what errors name.
 * @example decodeAudioBytes(row.audio.bytes, 'train.parquet row 3').sampleRate
 */
export function decodeAudioBytes(bytes: Uint8Array, name: string): DecodedAudio {
  if (isRiffWave(bytes.subarray(0, 12))) return parseWav(bytes, name);
  const dir = mkdtempSync(join(tmpdir(), 'kestrel-audio-'));
  const file = join(dir, 'audio');
  try {
    writeFileSync(file, bytes);
    return decodeWithFfmpeg(file);
  } catch (e) {
    throw new Error(`${name}: ${(e as Error).message.replaceAll(file, 'the audio bytes')}`, { cause: e });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A file path, or a file's bytes in memory with the name errors give them. */
export type AudioSource = string | { bytes: Uint8Array; name: string };

/**
 * Reads an audio file (or its bytes) as torchaudio.load does (normalised float32, channel-first).
 * @example const { samples, sampleRate } = loadAudio('speech.flac', { sampleRate: 16000, mono: true })  // [1, N], 16000
 */
export function loadAudio(source: AudioSource, opts: LoadAudioOptions = {}): LoadedAudio {
  if (opts.sampleRate !== undefined) checkNumber(opts.sampleRate, { int: true, min: 1 }, 'loadAudio sampleRate');
  const a = typeof source === 'string' ? decodeAudioFile(source) : decodeAudioBytes(source.bytes, source.name);
  const samples = tidy(() => {
    let x = tensor(a.data, { shape: [a.channels, a.frames], dtype: 'float32', backend: opts.backend });
    if (opts.mono && a.channels > 1) x = mean(x, 0, true);
    if (opts.sampleRate !== undefined && opts.sampleRate !== a.sampleRate) x = resample(x, a.sampleRate, opts.sampleRate, opts.resample);
    return x;
  });
  return { samples, sampleRate: opts.sampleRate ?? a.sampleRate };
}

/**
 * Writes samples [channels, frames] (or [frames]: mono) as a WAV file: 16-bit PCM by default,
 * { bits: 24 } / { bits: 32 } PCM, { bits: 32, float: true } IEEE float.
 * @example saveWav('out.wav', samples, 16000, { bits: 16 })
 */
export function saveWav(path: string, samples: Tensor, sampleRate: number, opts: WavWriteOptions = {}): void {
  checkNumber(sampleRate, { int: true, min: 1, max: 0xffffffff }, 'saveWav sampleRate');
  if (samples.ndim !== 1 && samples.ndim !== 2) throw new Error(`saveWav: samples must be [channels, frames] or [frames], got [${samples.shape.join(', ')}]`);
  const channels = samples.ndim === 2 ? samples.shape[0] : 1;
  if (channels < 1 || channels > 65535) throw new Error(`saveWav: ${channels} channels (a WAV file holds 1 to 65535)`);
  const data = tidy(() => contiguous(samples).toFloat32Array());
  writeWavFile(path, { data, channels, frames: samples.shape[samples.ndim - 1], sampleRate }, opts);
}
