// Test and demo speech made on the machine by Debian's espeak-ng (a formant synthesiser: no model
// download, deterministic output), written as WAV files. KESTREL_ESPEAK names another binary.
import { spawnSync } from 'node:child_process';

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
