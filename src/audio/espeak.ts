// Test and demo speech made on the machine by Debian's espeak-ng (a formant synthesiser: no model
// download, deterministic output), written as WAV files. KESTREL_ESPEAK names another binary.
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface SpeakOptions {
  /** an espeak-ng voice, e.g. 'en', 'en-us', 'en+f3' (a variant), 'de' (default 'en') */
  voice?: string;
  /** words per minute (espeak-ng's default 175) */
  speed?: number;
  /** pitch 0..99 (default 50) */
  pitch?: number;
}

/**
 * Speaks `text` into a 22050 Hz mono 16-bit WAV at `path`; throws naming the text when espeak-ng
 * is missing or fails.
 * @example espeakToWav('the cat sat', 'cat.wav', { voice: 'en+f3' })
 */
export function espeakToWav(text: string, path: string, opts: SpeakOptions = {}): void {
  const bin = process.env.KESTREL_ESPEAK || 'espeak-ng';
  const args = ['-w', path, '-v', opts.voice ?? 'en', '-s', String(opts.speed ?? 175), '-p', String(opts.pitch ?? 50), '--', text];
  const r = spawnSync(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.error) {
    const missing = (r.error as NodeJS.ErrnoException).code === 'ENOENT';
    throw new Error(missing ? `espeakToWav: '${bin}' is not installed (apt-get install espeak-ng, or set KESTREL_ESPEAK)` : `espeakToWav: running ${bin} failed: ${r.error.message}`);
  }
  if (r.status !== 0) throw new Error(`espeakToWav: ${bin} -v ${opts.voice ?? 'en'} exited ${r.status} speaking ${JSON.stringify(text)}: ${r.stderr.toString().trim()}`);
}

const SUBJECTS = ['the cat', 'a dog', 'my friend', 'the red bird', 'our teacher', 'a small boy', 'the old man', 'her sister'];
const VERBS = ['sees', 'likes', 'finds', 'calls', 'helps', 'follows'];
const OBJECTS = ['the ball', 'a green tree', 'the river', 'his house', 'the moon', 'a yellow car', 'the garden'];

/** The i-th sentence of a small fixed grammar (8 x 6 x 7 = 336 distinct sentences, then repeats). */
export function corpusSentence(i: number): string {
  const s = SUBJECTS[i % SUBJECTS.length];
  const v = VERBS[Math.floor(i / SUBJECTS.length) % VERBS.length];
  const o = OBJECTS[Math.floor(i / (SUBJECTS.length * VERBS.length)) % OBJECTS.length];
  return `${s} ${v} ${o}`;
}

/**
 * `count` short sentences spoken in turn by `voices` into dir (s0000.wav, ...), and
 * dir/manifest.jsonl of {"text", "audio"} lines (what finetune --task tts and --task asr read).
 * @example espeakCorpus('data/speech', { count: 300, voices: ['en', 'en+f3', 'en-us+m3'] })
 */
export function espeakCorpus(dir: string, o: { count: number; voices?: string[] }): string {
  const voices = o.voices ?? ['en', 'en+f3', 'en-us+m3', 'en+f5'];
  if (!Number.isInteger(o.count) || o.count < 1) throw new Error(`espeakCorpus: count must be an integer >= 1, got ${o.count}`);
  mkdirSync(dir, { recursive: true });
  const lines: string[] = [];
  for (let i = 0; i < o.count; i++) {
    const text = corpusSentence(i);
    const audio = `s${String(i).padStart(4, '0')}.wav`;
    espeakToWav(text, join(dir, audio), { voice: voices[i % voices.length] });
    lines.push(JSON.stringify({ text, audio }));
  }
  const manifest = join(dir, 'manifest.jsonl');
  writeFileSync(manifest, lines.join('\n') + '\n');
  return manifest;
}
