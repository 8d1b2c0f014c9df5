// How this process starts another `kestrel` (a rank, a Studio job, a test's CLI run): this node
// running the same code. From the compiled package that is dist/cli/run_main.js. From the
// TypeScript sources (tests, a dev checkout) it is src/cli/run_main.ts through tsx, unless
// KESTREL_CHILD_FROM_DIST=1 says that dist/ was built from these very sources (scripts/test.mjs
// checks that before it sets it): a child loads Kestrel's ~400 modules 2-3x faster as plain JS
// than through tsx's loader hooks, and the tests start hundreds of children.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const FROM_SOURCES = import.meta.url.endsWith('.ts');
const TSX = ['--import', 'tsx'];

/**
 * Node's own flags of this process that a child kestrel needs too (a loader for `--rewards r.ts`,
 * memory limits), less those that belong to this process alone: -e/-p and their code, --test*,
 * --input-type, and --inspect* (a debugger attaches here, and each child would take its port);
 * and, from the sources, tsx (a sources child names its own; where dist/ stands in, none is needed).
 */
function nodeFlags(): string[] {
  const out: string[] = [];
  const argv = process.execArgv;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-e' || a === '--eval' || a === '-p' || a === '--print' || a === '--input-type') i++;
    else if (FROM_SOURCES && a === TSX[0] && argv[i + 1] === TSX[1]) i++;
    else if (!(a.startsWith('--test') || a.startsWith('--input-type=') || a.startsWith('--inspect') || (FROM_SOURCES && a === '--import=tsx'))) out.push(a);
  }
  return out;
}

/** Whether a child started from the sources runs the compiled dist/ instead (see the top of this file). */
function childFromDist(): boolean {
  if (process.env.KESTREL_CHILD_FROM_DIST !== '1') return false;
  const main = new URL('../../dist/cli/run_main.js', import.meta.url);
  if (!existsSync(main)) throw new Error(`KESTREL_CHILD_FROM_DIST=1 but ${fileURLToPath(main)} is missing (run npm run build)`);
  return true;
}

/** The program and arguments that run `kestrel <args>` as a child process. */
export function kestrelCommand(args: string[]): { command: string; args: string[] } {
  if (!FROM_SOURCES) return { command: process.execPath, args: [...nodeFlags(), fileURLToPath(new URL('./run_main.js', import.meta.url)), ...args] };
  // from the sources the child names tsx itself (this process may have registered it without a flag)
  const dist = childFromDist();
  const main = new URL(dist ? '../../dist/cli/run_main.js' : './run_main.ts', import.meta.url);
  return { command: process.execPath, args: [...nodeFlags(), ...(dist ? [] : TSX), fileURLToPath(main), ...args] };
}
