// Locates ../shared/fixtures. A user's clone may lack it (tests skip with a message); in CI
// (CI=true) a missing fixture is a failure, never a skip.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'shared', 'fixtures');

/** The fixture path, or a skip reason (outside CI) when it is absent. Throws in CI. */
export function fixture(...parts: string[]): { path: string; skip: false | string } {
  const path = join(FIXTURES, ...parts);
  if (existsSync(path)) return { path, skip: false };
  if (process.env.CI === 'true') throw new Error(`fixture ${path} is missing (CI must have ../shared/fixtures)`);
  return { path, skip: `fixture ${path} not present (clone ../shared beside this repo to run it)` };
}
