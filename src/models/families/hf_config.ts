// Typed reads of an HF config.json object: every field error names the file and the field.

export type Json = Record<string, unknown>;

export class ConfigReader {
  constructor(readonly raw: Json, readonly file: string) {}

  private fail(field: string, want: string): never {
    throw new Error(`${this.file}: field '${field}' must be ${want}, got ${JSON.stringify(this.raw[field])}`);
  }

  has(field: string): boolean {
    return this.raw[field] !== undefined && this.raw[field] !== null;
  }

  int(field: string, fallback?: number): number {
    const v = this.raw[field] ?? fallback;
    if (v === undefined) throw new Error(`${this.file}: missing required field '${field}'`);
    if (!Number.isInteger(v) || (v as number) < 0) this.fail(field, 'a non-negative integer');
    return v as number;
  }

  num(field: string, fallback?: number): number {
    const v = this.raw[field] ?? fallback;
    if (v === undefined) throw new Error(`${this.file}: missing required field '${field}'`);
    if (typeof v !== 'number' || !Number.isFinite(v)) this.fail(field, 'a number');
    return v as number;
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
    if (!list.every((x) => Number.isInteger(x))) this.fail(field, 'an integer or a list of integers');
    return list as number[];
  }

  object(field: string): Json | null {
    const v = this.raw[field];
    if (v === undefined || v === null) return null;
    if (typeof v !== 'object' || Array.isArray(v)) this.fail(field, 'an object');
    return v as Json;
  }
}
