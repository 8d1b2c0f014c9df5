// Typed reads of an HF config.json object: every field error names the file and the field. Each
// value's type and range is checked here as it is read (relations between fields: config.ts's
// checkDecoderConfig), so a corrupt or mistyped config.json fails before anything is allocated,
// never as NaN or an out-of-memory abort later.

export type Json = Record<string, unknown>;

/**
 * Upper bounds on sizes read from config.json: far above every public model (Llama 3.1 405B has
 * 126 layers, hidden 16384, MLP 53248; vocabularies reach ~256k), low enough that a typo or a
 * corrupt file cannot ask for an absurd allocation. vocab stays below 2^24, where float32 stops
 * holding every integer id exactly.
 */
export const CONFIG_LIMITS = {
  layers: 1024,
  hidden: 2 ** 17,
  intermediate: 2 ** 20,
  vocab: 2 ** 24,
  heads: 2 ** 12,
  headDim: 2 ** 12,
  positions: 2 ** 24,
  experts: 2 ** 12,
} as const;

/** The most parameters (elements) a config may imply: 2^40, about 1.1e12, beyond any model loadable here. */
export const MAX_PARAMETERS = 2 ** 40;

export class ConfigReader {
  /** `prefix` names a nested object's fields in errors (`rope_scaling.factor`). */
  constructor(readonly raw: Json, readonly file: string, readonly prefix = '') {}

  private fail(field: string, want: string): never {
    const v = this.raw[field];
    // JSON.stringify would print Infinity (from 1e999) as null
    throw new Error(`${this.file}: field '${this.prefix}${field}' must be ${want}, got ${typeof v === 'number' ? v : JSON.stringify(v)}`);
  }

  private value(field: string, fallback: unknown): unknown {
    const v = this.raw[field] ?? fallback;
    if (v === undefined) throw new Error(`${this.file}: missing required field '${this.prefix}${field}'`);
    return v;
  }

  has(field: string): boolean {
    return this.raw[field] !== undefined && this.raw[field] !== null;
  }

  int(field: string, fallback?: number): number {
    const v = this.value(field, fallback);
    if (!Number.isSafeInteger(v) || (v as number) < 0) this.fail(field, 'a non-negative integer');
    return v as number;
  }

  /** A size: an integer in [1, max]. */
  size(field: string, max: number, fallback?: number): number {
    const v = this.value(field, fallback);
    if (!Number.isInteger(v) || (v as number) < 1 || (v as number) > max) this.fail(field, `an integer from 1 to ${max}`);
    return v as number;
  }

  num(field: string, fallback?: number): number {
    const v = this.value(field, fallback);
    if (typeof v !== 'number' || !Number.isFinite(v)) this.fail(field, 'a number');
    return v as number;
  }

  /** A finite number > 0 (epsilons, rope_theta, scaling factors). */
  positive(field: string, fallback?: number): number {
    const v = this.value(field, fallback);
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) this.fail(field, 'a finite number > 0');
    return v;
  }

  bool(field: string, fallback: boolean): boolean {
    const v = this.raw[field] ?? fallback;
    if (typeof v !== 'boolean') this.fail(field, 'true or false');
    return v as boolean;
  }

  str(field: string, fallback?: string): string {
    const v = this.raw[field] ?? fallback;
    if (typeof v !== 'string') this.fail(field, 'a string');
    return v as string;
  }

  /** A token id or list of ids (eos_token_id may be either). */
  ids(field: string): number[] {
    const v = this.raw[field];
    if (v === undefined || v === null) return [];
    const list = Array.isArray(v) ? v : [v];
    if (!list.every((x) => Number.isSafeInteger(x))) this.fail(field, 'an integer or a list of integers');
    return list as number[];
  }

  object(field: string): Json | null {
    const v = this.raw[field];
    if (v === undefined || v === null) return null;
    if (typeof v !== 'object' || Array.isArray(v)) this.fail(field, 'an object');
    return v as Json;
  }

  /** An error naming this file and a field (relations between fields: divisibility, order). */
  error(field: string, why: string): Error {
    return new Error(`${this.file}: field '${this.prefix}${field}' ${why}`);
  }
}

/**
 * Refuses a config whose parameter count is beyond MAX_PARAMETERS, before any tensor is allocated.
 * @example checkParameterCount('model/config.json', 7e9, 'num_hidden_layers 32, hidden_size 4096, ...')
 */
export function checkParameterCount(file: string, count: number, sizes: string): void {
  if (!(count <= MAX_PARAMETERS))
    throw new Error(`${file}: the config implies ${count.toExponential(3)} parameters (${sizes}), more than the ${MAX_PARAMETERS.toExponential(3)} Kestrel accepts`);
}
