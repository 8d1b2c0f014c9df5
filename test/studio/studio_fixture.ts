// What the Studio tests run against: a --models folder holding tiny Llamas with the demo's byte
// tokenizer (serve_fixture's model, a copy so the arena has two, one whose context is long enough
// for a reply that takes seconds, to stop, and one without a chat template), a folder without a
// config.json (not a model: not listed), and a `kestrel studio` process on a free port.
import { cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type RunningServer, removeFixture, startListening, writeServeFixture } from '../serve/serve_fixture.js';

/** tiny-long's context: room for a reply of a few thousand tokens */
export const LONG_CONTEXT = 4096;

export interface StudioFixture {
  root: string;
  modelsDir: string;
  remove(): void;
}

/** A text dataset the tiny models fine-tune on (JSONL, one {"text"} per line). */
export const TEXT_ROWS = Array.from({ length: 16 }, (_, i) => JSON.stringify({ text: `row ${i}: the quick brown fox jumps over the lazy dog` })).join('\n') + '\n';

export function writeStudioFixture(): StudioFixture {
  const fx = writeServeFixture();
  const modelsDir = join(fx.root, 'models');
  mkdirSync(modelsDir);
  cpSync(fx.modelDir, join(modelsDir, 'tiny'), { recursive: true });
  cpSync(fx.modelDir, join(modelsDir, 'tiny-copy'), { recursive: true });
  const long = join(modelsDir, 'tiny-long');
  cpSync(fx.modelDir, long, { recursive: true });
  const config = JSON.parse(readFileSync(join(long, 'config.json'), 'utf8')) as Record<string, unknown>;
  writeFileSync(join(long, 'config.json'), JSON.stringify({ ...config, max_position_embeddings: LONG_CONTEXT, eos_token_id: null }));
  // no eos at all: its replies run to max_tokens (the tiny model's greedy reply ends with
  // <|im_end|> after a few hundred tokens)
  const tokConfig = JSON.parse(readFileSync(join(long, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
  writeFileSync(join(long, 'tokenizer_config.json'), JSON.stringify({ ...tokConfig, eos_token: null }));
  // a base model: no chat template of its own (the Studio detects a built-in one)
  const base = join(modelsDir, 'tiny-base');
  cpSync(fx.modelDir, base, { recursive: true });
  const baseTok = JSON.parse(readFileSync(join(base, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
  delete baseTok.chat_template;
  writeFileSync(join(base, 'tokenizer_config.json'), JSON.stringify(baseTok));
  mkdirSync(join(modelsDir, 'notes'));
  writeFileSync(join(modelsDir, 'notes', 'readme.txt'), 'not a model');
  return { root: fx.root, modelsDir, remove: () => removeFixture(fx.root) };
}

/**
 * `kestrel studio --models DIR --data DIR/../<dataName> --port 0 ...args`, resolved once it printed
 * its URL (the URL without its #token).
 */
export function startStudio(modelsDir: string, args: string[] = [], dataName = 'studio-data'): Promise<RunningServer> {
  return startListening(['studio', '--models', modelsDir, '--data', join(modelsDir, '..', dataName), '--port', '0', ...args], /open (http:\/\/[^/\s]+)/);
}
