// The defaults that a command and its `--help` (help.ts) both print, kept apart from the commands
// so that `kestrel <command> --help` loads no command module (main.ts imports each one when it runs).
import { homedir } from 'node:os';
import { join } from 'node:path';

export const SERVE_DEFAULTS = {
  port: 8000, host: '127.0.0.1', maxQueue: 64, maxBodyBytes: 4 * 2 ** 20, engine: 'batch', kvCacheMb: 256, blockSize: 16, prefillChunk: 256, maxBatch: 64,
} as const;

export const STUDIO_DEFAULTS = { port: 7860, host: '127.0.0.1', models: '.', data: join(homedir(), '.kestrel-studio'), maxUploadBytes: 64 * 2 ** 20 } as const;

export const EXPORT_DEFAULTS = { format: 'gguf', type: 'f16' } as const;
