// Field access for input records with errors that name the file, line and field, so a bad record
// reads "train.jsonl:12: field "messages[2].content" must be a string, got null".
import { DataError } from './errors.js';
import type { DataRecord } from './readers.js';

/** "a string", "null", "an array", ... for error messages. */
export function kindOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  return typeof v === 'string' ? 'a string' : `a ${typeof v}`;
}

/** obj[name] when present (undefined otherwise); `path` names it in errors. */
function get(rec: DataRecord, obj: unknown, path: string, name: string, required: boolean): unknown {
  const v = (obj as Record<string, unknown>)[name];
  if (v === undefined && required) throw new DataError(rec.where, `missing field "${path}"`);
  return v;
}

/**
 * A string field (required unless optional; null counts as absent for optional fields).
 * @example
 * const text = stringField(rec, rec.value, 'text');
 */
export function stringField(rec: DataRecord, obj: unknown, name: string, opts: { path?: string; optional?: boolean } = {}): string | undefined {
  const path = opts.path ?? name;
  const v = get(rec, obj, path, name, !opts.optional);
  if (v === undefined || (v === null && opts.optional)) return undefined;
  if (typeof v !== 'string') throw new DataError(rec.where, `field "${path}" must be a string, got ${kindOf(v)}`);
  return v;
}

/** A required array field of objects; each element is checked to be an object. */
export function objectArrayField(rec: DataRecord, obj: unknown, name: string): Record<string, unknown>[] {
  const v = get(rec, obj, name, name, true);
  if (!Array.isArray(v)) throw new DataError(rec.where, `field "${name}" must be an array, got ${kindOf(v)}`);
  v.forEach((m, i) => {
    if (typeof m !== 'object' || m === null || Array.isArray(m)) throw new DataError(rec.where, `field "${name}[${i}]" must be an object, got ${kindOf(m)}`);
  });
  return v as Record<string, unknown>[];
}

/**
 * An array of integers: token ids in [0, vocab) or, when allowIgnore, also -100.
 * @example
 * const ids = intArrayField(rec, 'input_ids', { vocab: 50257 });
 */
export function intArrayField(rec: DataRecord, name: string, opts: { vocab?: number; allowIgnore?: boolean } = {}): number[] {
  const v = get(rec, rec.value, name, name, true);
  if (!Array.isArray(v)) throw new DataError(rec.where, `field "${name}" must be an array of token ids, got ${kindOf(v)}`);
  for (let i = 0; i < v.length; i++) {
    const x = v[i];
    const ok = typeof x === 'number' && Number.isSafeInteger(x) && (x >= 0 || (opts.allowIgnore === true && x === -100));
    if (!ok) throw new DataError(rec.where, `field "${name}[${i}]" must be a token id (an integer >= 0${opts.allowIgnore ? ', or -100' : ''}), got ${JSON.stringify(typeof x === 'bigint' ? String(x) : x)}`);
    if (opts.vocab !== undefined && x >= opts.vocab) throw new DataError(rec.where, `field "${name}[${i}]" = ${x} is outside the vocabulary (size ${opts.vocab})`);
  }
  return v as number[];
}
