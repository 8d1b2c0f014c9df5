// What the Studio tests run against: a --models folder holding two tiny Llamas with the demo's byte
// tokenizer (serve_fixture's model and a copy, so the arena has two), a folder without a
// config.json (not a model: not listed), and a `kestrel studio` process on a free port.
import { cpSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type RunningServer, removeFixture, startListening, writeServeFixture } from '../serve/serve_fixture.js';

export interface StudioFixture {
  root: string;
  modelsDir: string;
  remove(): void;
}

export function writeStudioFixture(): StudioFixture {
  const fx = writeServeFixture();
  const modelsDir = join(fx.root, 'models');
  mkdirSync(modelsDir);
  cpSync(fx.modelDir, join(modelsDir, 'tiny'), { recursive: true });
  cpSync(fx.modelDir, join(modelsDir, 'tiny-copy'), { recursive: true });
  mkdirSync(join(modelsDir, 'notes'));
  writeFileSync(join(modelsDir, 'notes', 'readme.txt'), 'not a model');
  return { root: fx.root, modelsDir, remove: () => removeFixture(fx.root) };
}

/** `kestrel studio --models DIR --port 0 ...args`, resolved once it printed its URL (the URL without its #token). */
export function startStudio(modelsDir: string, args: string[] = []): Promise<RunningServer> {
  return startListening(['studio', '--models', modelsDir, '--port', '0', ...args], /open (http:\/\/[^/\s]+)/);
}
