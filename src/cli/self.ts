// How this process starts another `kestrel` (a rank, a Studio job, a test's CLI run): this node
// running the same code. From the compiled package that is dist/cli/run_main.js. From the
// TypeScript sources (tests, a dev checkout) it is src/cli/run_main.ts with this process's node
// flags (--import tsx), unless KESTREL_CHILD_FROM_DIST=1 says that dist/ was built from these very
// sources (scripts/test.mjs checks that before it sets it): a child loads Kestrel's ~400 modules
// 2-3x faster as plain JS than through tsx's loader hooks, and the tests start hundreds of children.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const FROM_SOURCES = import.meta.url.endsWith('.ts');

/** Node's own flags of this process that a child kestrel needs too, not -e/--test ones (nor tsx's, for a compiled child). */
function nodeFlags(compiledChild: boolean): string[] {
  const out: string[] = [];
  const argv = process.execArgv;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '-e' || argv[i] === '--eval' || argv[i] === '-p' || argv[i] === '--print') i++;
    else if (compiledChild && argv[i] === '--import' && argv[i + 1] === 'tsx') i++;
    else if (compiledChild && argv[i] === '--import=tsx') continue;
    else if (!argv[i].startsWith('--test')) out.push(argv[i]);
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
  const compiled = !FROM_SOURCES || childFromDist();
  const main = new URL(FROM_SOURCES ? `../../${compiled ? 'dist' : 'src'}/cli/run_main.${compiled ? 'js' : 'ts'}` : './run_main.js', import.meta.url);
  return { command: process.execPath, args: [...nodeFlags(compiled), fileURLToPath(main), ...args] };
}
