// Every container other than WAV (FLAC, MP3, Ogg Vorbis, Opus, M4A...) is decoded by Debian's
// ffmpeg run as a child process writing float32 PCM to a pipe, the way openai-whisper and
// 🤗 datasets read audio; ffprobe (same package) gives the channel count and rate first.
// KESTREL_FFMPEG names another ffmpeg binary (its ffprobe is looked for beside it).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { DecodedAudio } from './wav.js';

// an hour of 48 kHz stereo float32 is 1.4 GB
const MAX_PCM_BYTES = 2 ** 31 - 1;

function tools(): { ffmpeg: string; ffprobe: string } {
  const ffmpeg = process.env.KESTREL_FFMPEG || 'ffmpeg';
  const ffprobe = ffmpeg.includes('/') ? join(dirname(ffmpeg), basename(ffmpeg).replace('ffmpeg', 'ffprobe')) : 'ffprobe';
  return { ffmpeg, ffprobe };
}

function run(cmd: string, args: string[], file: string): Buffer {
  const r = spawnSync(cmd, args, { maxBuffer: MAX_PCM_BYTES, stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.error) {
    const missing = (r.error as NodeJS.ErrnoException).code === 'ENOENT';
    throw new Error(missing
      ? `${file}: decoding this format needs ffmpeg, which is not installed ('${cmd}' not found; apt-get install ffmpeg, or set KESTREL_FFMPEG). WAV files are read without it`
      : `${file}: running ${cmd} failed: ${r.error.message}`);
  }
  if (r.status !== 0) {
    const why = r.stderr.toString().trim().split('\n').slice(-2).join(' | ');
    throw new Error(`${file}: not an audio file ffmpeg can decode (${basename(cmd)} exit ${r.status}: ${why})`);
  }
  return r.stdout;
}

// Vorbis and Opus end on a whole codec block: ffmpeg's pipe output keeps the block's padding
// past the stream's declared duration (a 0.5 s Ogg Vorbis decodes to 8192 of 8000 frames), while
// the container's end position says where the signal stops. Trim at most one block (8192 frames,
// Vorbis' largest) so a wrong duration estimate never cuts real audio.
const MAX_END_PADDING = 8192;

interface StreamInfo {
  channels: number;
  sampleRate: number;
  /** frames the container says the stream holds, when it says */
  declaredFrames: number | null;
}

/** Channels, rate and declared length of the first audio stream, from ffprobe. */
function probe(path: string, ffprobe: string): StreamInfo {
  const args = ['-v', 'error', '-select_streams', 'a:0', '-show_entries', 'stream=channels,sample_rate,time_base,duration_ts', '-of', 'json', path];
  const out = run(ffprobe, args, path);
  type Stream = { channels?: number; sample_rate?: string; time_base?: string; duration_ts?: number };
  const s = ((JSON.parse(out.toString()) as { streams?: Stream[] }).streams ?? [])[0];
  const channels = Number(s?.channels);
  const sampleRate = Number(s?.sample_rate);
  if (!s || !(channels >= 1) || !(sampleRate >= 1)) throw new Error(`${path}: not an audio file (ffprobe found no audio stream)`);
  const [num, den] = (s.time_base ?? '').split('/').map(Number);
  const ts = Number(s.duration_ts);
  const declaredFrames = num > 0 && den > 0 && ts > 0 ? Math.round((ts * num * sampleRate) / den) : null;
  return { channels, sampleRate, declaredFrames };
}

/**
 * Decodes any file ffmpeg reads to planar float32 at the file's own rate and channel count.
 * @example decodeWithFfmpeg('speech.flac').sampleRate  // 16000
 */
export function decodeWithFfmpeg(path: string): DecodedAudio {
  if (!existsSync(path)) throw new Error(`${path}: no such file`);
  const { ffmpeg, ffprobe } = tools();
  const { channels, sampleRate, declaredFrames } = probe(path, ffprobe);
  const pcm = run(ffmpeg, ['-nostdin', '-v', 'error', '-i', path, '-map', '0:a:0', '-f', 'f32le', '-c:a', 'pcm_f32le', '-'], path);
  const decoded = Math.floor(pcm.length / (4 * channels));
  const padded = declaredFrames !== null && decoded > declaredFrames && decoded - declaredFrames <= MAX_END_PADDING;
  const frames = padded ? declaredFrames : decoded;
  // the pipe's bytes may sit at any offset: copy to an aligned array once, then deinterleave
  const interleaved = new Float32Array(frames * channels);
  new Uint8Array(interleaved.buffer).set(pcm.subarray(0, interleaved.byteLength));
  const data = new Float32Array(frames * channels);
  for (let c = 0; c < channels; c++)
    for (let i = 0; i < frames; i++) data[c * frames + i] = interleaved[i * channels + c];
  return { data, channels, frames, sampleRate };
}
