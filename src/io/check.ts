// One check for the numbers users give Kestrel (flags, run files, DeepSpeed configs, generation
// options): the value, its name as the user wrote it, and the range it must lie in, so every
// bad value reads "--lr must be >= 0, got -1" wherever it came from.

/** Allowed values: an integer or any finite number, with inclusive (min/max) or exclusive (above/below) bounds. */
export interface NumberRule {
  int?: boolean;
  min?: number;
  max?: number;
  above?: number;
  below?: number;
}

function describe(r: NumberRule): string {
  const parts = [r.int ? 'an integer' : 'a number'];
  if (r.min !== undefined) parts.push(`>= ${r.min}`);
  if (r.above !== undefined) parts.push(`> ${r.above}`);
  if (r.max !== undefined) parts.push(`<= ${r.max}`);
  if (r.below !== undefined) parts.push(`< ${r.below}`);
  return parts.join(' ');
}

/**
 * Returns v when it obeys the rule; otherwise throws naming `what` and the value.
 * @example checkNumber(opts.topP, { above: 0, max: 1 }, '--top-p')
 */
export function checkNumber(v: unknown, rule: NumberRule, what: string): number {
  const n = v as number;
  const ok = typeof v === 'number' && Number.isFinite(n) && (!rule.int || Number.isSafeInteger(n))
    && (rule.min === undefined || n >= rule.min) && (rule.max === undefined || n <= rule.max)
    && (rule.above === undefined || n > rule.above) && (rule.below === undefined || n < rule.below);
  if (!ok) throw new RangeError(`${what} must be ${describe(rule)}, got ${typeof v === 'string' ? `'${v}'` : String(v)}`);
  return n;
}
