// Errors of the data pipeline. Each names the file and the line (JSONL) or record (JSON, Parquet)
// and what is wrong with it, so a user can open the file at that spot; BadLines decides whether
// such an error stops the run (the default) or is counted and reported (skipBadLines).

/** Where a record came from: a JSONL line (1-based) or a JSON/Parquet record (1-based). */
export interface Where {
  readonly file: string;
  readonly line?: number;
  readonly record?: number;
}

/** "file:line", "file record N" or "file". */
export function whereString(w: Where): string {
  if (w.line !== undefined) return `${w.file}:${w.line}`;
  if (w.record !== undefined) return `${w.file} record ${w.record}`;
  return w.file;
}

/**
 * A malformed input record: bad JSON, a missing field, a field of the wrong type.
 * @example
 * throw new DataError({ file: 'train.jsonl', line: 7 }, 'missing field "text"');
 * // DataError: train.jsonl:7: missing field "text"
 */
export class DataError extends Error {
  override readonly name = 'DataError';
  constructor(readonly where: Where, readonly problem: string) {
    super(`${whereString(where)}: ${problem}`);
  }
}

/**
 * The policy for malformed records: throw (default) or count and keep the first few messages.
 * @example
 * const bad = new BadLines(true);
 * bad.report(new DataError({ file: 'a.jsonl', line: 3 }, 'bad JSON'));
 * bad.count // 1
 */
export class BadLines {
  count = 0;
  readonly messages: string[] = [];
  constructor(readonly skip: boolean, private readonly keep = 20) {}

  /** Throws err unless skipping; otherwise counts it. */
  report(err: DataError): void {
    if (!this.skip) throw err;
    this.count++;
    if (this.messages.length < this.keep) this.messages.push(err.message);
  }

  /** Runs fn; a DataError it throws is reported (thrown or counted), anything else propagates. */
  guard<T>(fn: () => T): T | undefined {
    try {
      return fn();
    } catch (e) {
      if (!(e instanceof DataError)) throw e;
      this.report(e);
      return undefined;
    }
  }
}
