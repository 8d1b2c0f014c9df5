// Command-line flags for every command: node:util's parseArgs in strict mode, plus the two
// things it lacks. A negative number after a flag (`--max-steps -1`) is read as the flag's value
// (parseArgs calls it an ambiguous option), so the range check can name the flag and the value;
// numbers are parsed and range-checked in one place (checkNumber).
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { type NumberRule, checkNumber } from '../io/check.js';

type Options = NonNullable<ParseArgsConfig['options']>;

const NEGATIVE_NUMBER = /^-(\d|\.\d|Infinity)/;

/** `--flag -1` becomes `--flag=-1` for flags that take a value. */
function attachNegativeValues(argv: string[], options: Options): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const name = argv[i].startsWith('--') ? argv[i].slice(2) : null;
    if (name && options[name]?.type === 'string' && i + 1 < argv.length && NEGATIVE_NUMBER.test(argv[i + 1])) out.push(`${argv[i]}=${argv[++i]}`);
    else out.push(argv[i]);
  }
  return out;
}

/**
 * parseArgs (strict: unknown flags are errors) with negative numbers accepted as values;
 * `positionals: true` also takes bare arguments (file names).
 * @example const { values } = parseFlags(argv, { model: { type: 'string' } });
 */
export function parseFlags<T extends Options>(argv: string[], options: T, opts: { positionals?: boolean } = {}): {
  values: ReturnType<typeof parseArgs<{ options: T; strict: true }>>['values'];
  positionals: string[];
} {
  const { values, positionals } = parseArgs({ args: attachNegativeValues(argv, options), options, strict: true, allowPositionals: opts.positionals ?? false });
  return { values, positionals };
}

/**
 * A numeric flag (undefined when absent); an error names the flag when it is not a number or
 * breaks the rule.
 * @example const steps = numberFlag(values, 'max-steps', { int: true, min: 1 }) ?? 100;
 */
export function numberFlag(values: Record<string, unknown>, name: string, rule: NumberRule = {}): number | undefined {
  const v = values[name];
  if (v === undefined) return undefined;
  const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
  if (!Number.isFinite(n)) throw new RangeError(`--${name} must be a number, got '${String(v)}'`);
  return checkNumber(n, rule, `--${name}`);
}
