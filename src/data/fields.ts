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
 * An array of integers (token ids; their range is checked for every format at once: checkTokenIds).
 * @example
 * const ids = intArrayField(rec, 'input_ids');
 */
export function intArrayField(rec: DataRecord, name: string): number[] {
  const v = get(rec, rec.value, name, name, true);
  if (!Array.isArray(v)) throw new DataError(rec.where, `field "${name}" must be an array of token ids, got ${kindOf(v)}`);
  for (let i = 0; i < v.length; i++) {
    const x: unknown = v[i];
    if (typeof x !== 'number' || !Number.isInteger(x)) {
      throw new DataError(rec.where, `field "${name}[${i}]" must be a token id (an integer), got ${typeof x === 'number' || typeof x === 'bigint' ? String(x) : kindOf(x)}`);
    }
  }
  return v as number[];
}
