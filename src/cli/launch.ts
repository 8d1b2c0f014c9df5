// `kestrel launch -n N [--master-port P] -- <command>`: runs a command as N ranks on this machine
// (src/dist/launch.ts); `kestrel ...` after `--` runs this same kestrel. Exits with the failing
// rank's code after naming it, or 130 after Ctrl-C stopped every rank.
import { fileURLToPath } from 'node:url';
import { extname } from 'node:path';
import { failureMessage, launch } from '../dist/launch.js';
import { numberFlag, parseFlags } from './flags.js';

const FLAGS = { nproc: { type: 'string', short: 'n' }, 'master-port': { type: 'string' }, 'master-addr': { type: 'string' } } as const;

/** Node's own flags of this process that a child kestrel needs too (--import tsx under tests), not -e/--test ones. */
function nodeFlags(): string[] {
  const out: string[] = [];
  const argv = process.execArgv;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '-e' || argv[i] === '--eval' || argv[i] === '-p' || argv[i] === '--print') i++;
    else if (!argv[i].startsWith('--test')) out.push(argv[i]);
  }
  return out;
}

/** The program and arguments of a rank: `kestrel ...` becomes this node running this kestrel's CLI. */
export function rankCommand(words: string[]): { command: string; args: string[] } {
  if (words[0] === 'kestrel') {
    const main = fileURLToPath(new URL(`./run_main${extname(fileURLToPath(import.meta.url))}`, import.meta.url));
    return { command: process.execPath, args: [...nodeFlags(), main, ...words.slice(1)] };
  }
  return { command: words[0], args: words.slice(1) };
}

/** Starts `words` as n ranks and waits; the exit code. */
export async function launchRanks(n: number, words: string[], opts: { masterPort?: number; masterAddr?: string } = {}): Promise<number> {
  const r = await launch({ nproc: n, ...rankCommand(words), ...opts });
  if (r.exitCode !== 0) process.stderr.write(`kestrel launch: ${failureMessage(r)}\n`);
  return r.exitCode;
}

export async function launchCommand(argv: string[]): Promise<number> {
  const split = argv.indexOf('--');
  if (split < 0 || split === argv.length - 1) throw new Error('launch: give the command to run after --, e.g. kestrel launch -n 2 -- kestrel train ...');
  const { values } = parseFlags(argv.slice(0, split), FLAGS);
  const n = numberFlag(values, 'nproc', { int: true, min: 1 });
  if (n === undefined) throw new Error('launch: -n N (the number of ranks) is required');
  const masterPort = numberFlag(values, 'master-port', { int: true, min: 1, max: 65535 });
  return launchRanks(n, argv.slice(split + 1), { masterPort, masterAddr: values['master-addr'] });
}
