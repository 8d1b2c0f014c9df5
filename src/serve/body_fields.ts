// Typed reads of a JSON request body: each getter returns the field's value, its default when
// absent (or null), or throws a 400 that names the field and says what it must be.
import { type NumberRule, checkNumber } from '../io/check.js';
import { invalid } from './errors.js';

const kind = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v);

export class BodyFields {
  readonly body: Record<string, unknown>;

  constructor(body: unknown) {
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw invalid(`request body must be a JSON object, got ${kind(body)}`);
    this.body = body as Record<string, unknown>;
  }

  has(name: string): boolean {
    return this.body[name] !== undefined && this.body[name] !== null;
  }

  number(name: string, rule: NumberRule, fallback: number): number;
  number(name: string, rule: NumberRule): number | undefined;
  number(name: string, rule: NumberRule, fallback?: number): number | undefined {
    if (!this.has(name)) return fallback;
    try {
      return checkNumber(this.body[name], rule, `'${name}'`);
    } catch (e) {
      throw invalid((e as Error).message, name);
    }
  }

  boolean(name: string, fallback: boolean): boolean {
    if (!this.has(name)) return fallback;
    const v = this.body[name];
    if (typeof v !== 'boolean') throw invalid(`'${name}' must be a boolean, got ${kind(v)}`, name);
    return v;
  }

  string(name: string): string | undefined {
    if (!this.has(name)) return undefined;
    const v = this.body[name];
    if (typeof v !== 'string') throw invalid(`'${name}' must be a string, got ${kind(v)}`, name);
    return v;
  }

  requiredString(name: string): string {
    const v = this.string(name);
    if (v === undefined) throw invalid(`'${name}' is required`, name);
    return v;
  }

  /** OpenAI's `stop`: a string or up to `max` strings (empty strings are not allowed). */
  stopStrings(name: string, max: number): string[] {
    if (!this.has(name)) return [];
    const v = this.body[name];
    const list = typeof v === 'string' ? [v] : v;
    if (!Array.isArray(list) || list.length > max || list.some((s) => typeof s !== 'string' || s === ''))
      throw invalid(`'${name}' must be a non-empty string or a list of at most ${max} non-empty strings`, name);
    return list as string[];
  }

  object(name: string): Record<string, unknown> | undefined {
    if (!this.has(name)) return undefined;
    const v = this.body[name];
    if (typeof v !== 'object' || Array.isArray(v)) throw invalid(`'${name}' must be an object, got ${kind(v)}`, name);
    return v as Record<string, unknown>;
  }

  array(name: string): unknown[] | undefined {
    if (!this.has(name)) return undefined;
    const v = this.body[name];
    if (!Array.isArray(v)) throw invalid(`'${name}' must be an array, got ${kind(v)}`, name);
    return v;
  }
}

export { kind };
