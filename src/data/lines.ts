// The lines of a file, streamed, with a cap on the bytes of one line: a line over the cap is
// counted but never decoded or kept whole, so a 50 MB single-line record costs at most the cap plus
// a read chunk, not the line, its JSON parse and its tokenization (which ran V8 out of heap).
// Split at "\n"; a "\r" before it stays in the text (JSON and trim() treat it as whitespace).
import { createReadStream } from 'node:fs';

/** 16 MiB: far above real records (a book is ~1 MB), far below what a default V8 heap can tokenize. */
export const DEFAULT_MAX_RECORD_BYTES = 16 * 2 ** 20;

/** Line `line` (1-based): its text, or null when it has more than maxBytes bytes (then `bytes` says how many). */
export interface Line {
  readonly line: number;
  readonly text: string | null;
  readonly bytes: number;
}

/**
 * Streams the lines of a file; a last line without "\n" counts, an empty end does not.
 * @example
 * for await (const l of readLines('train.jsonl', 1 << 20)) if (l.text === null) console.log(`line ${l.line} is ${l.bytes} bytes`);
 */
export async function* readLines(file: string, maxBytes: number): AsyncGenerator<Line> {
  let parts: Buffer[] = [];
  let bytes = 0;
  let line = 0;
  const keep = (b: Buffer): void => {
    if (b.length === 0) return;
    bytes += b.length;
    if (bytes <= maxBytes) parts.push(b);
    else parts = [];
  };
  const end = (): Line => {
    // Decoded only when whole, so a character split across read chunks stays intact.
    const l = { line: ++line, text: bytes <= maxBytes ? Buffer.concat(parts).toString('utf8') : null, bytes };
    parts = [];
    bytes = 0;
    return l;
  };
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
    let start = 0;
    for (let nl = chunk.indexOf(10); nl !== -1; nl = chunk.indexOf(10, start)) {
      if (bytes === 0) {
        // The common case, a line within one chunk: decoded in place, without a copy.
        const n = nl - start;
        yield { line: ++line, text: n <= maxBytes ? chunk.toString('utf8', start, nl) : null, bytes: n };
      } else {
        keep(chunk.subarray(start, nl));
        yield end();
      }
      start = nl + 1;
    }
    keep(chunk.subarray(start));
  }
  if (bytes > 0) yield end();
}
