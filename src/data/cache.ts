// On-disk cache of tokenized files: one file per data file, named by a hash of what shaped its
// tokens (path, size, mtime, format, encoder options, tokenizer identity). It holds the documents
// before splitting, packing and truncation, so changing seqLen, pack or the split reuses it.
// Written to a temporary name and renamed, so a crash never leaves a half-written entry.
import { createHash } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Tokenizer } from '../tokenizer/index.js';
import { type TokenStore, storeCount, storeTokens } from './token_store.js';

const MAGIC = 'KDATA001';
/** Bump when tokenization or the file layout changes: old entries are then ignored. */
const CACHE_VERSION = 1;

const fingerprints = new WeakMap<Tokenizer, string>();

/** Text that exercises pre-tokenization, merges, bytes and specials. */
const PROBE = 'Hello world! 12345 ÄÖü ñ 日本語 🙂\n\tcode_x = f(y) + 3.14;  <s></s> <|endoftext|> <|im_start|>';

/**
 * A content hash of a tokenizer: its vocabulary, special tokens, added tokens, templates and the
 * encoding of a probe text. Two tokenizers that tokenize alike get the same identity wherever they live.
 * @example
 * tokenizerIdentity(tok) // 'c0ffee...' (sha256 hex)
 */
export function tokenizerIdentity(tok: Tokenizer): string {
  let id = fingerprints.get(tok);
  if (id === undefined) {
    const h = createHash('sha256');
    h.update(JSON.stringify([tok.source, tok.vocabSize, tok.length, tok.specialTokensMap, tok.chatTemplates, [...tok.addedTokens]]));
    h.update(JSON.stringify(tok.convertIdsToTokens(Array.from({ length: tok.length }, (_, i) => i))));
    h.update(JSON.stringify([tok.encode(PROBE), tok.encode(PROBE, { addSpecialTokens: false })]));
    id = h.digest('hex');
    fingerprints.set(tok, id);
  }
  return id;
}

/** What a cache entry records beside the tokens (the reading's statistics). */
export interface CacheMeta {
  readonly format: string;
  readonly records: number;
  readonly badLines: number;
  readonly badLineMessages: readonly string[];
}

/**
 * The cache key of a data file: sha256 of (version, absolute path, size, mtime, encoder identity, extra).
 * @example
 * cacheKey('data/train.jsonl', { encoder: enc.identity, tokenizer: tokenizerIdentity(tok) })
 */
export function cacheKey(file: string, parts: Readonly<Record<string, unknown>>): string {
  const st = statSync(file);
  return createHash('sha256')
    .update(JSON.stringify({ v: CACHE_VERSION, path: resolve(file), size: st.size, mtimeMs: st.mtimeMs, ...parts }))
    .digest('hex');
}

const entryPath = (dir: string, key: string): string => join(dir, `${key}.kdata`);

/** Bytes to add to n to reach a multiple of 8 (typed-array alignment). */
const pad8 = (n: number): number => (8 - (n % 8)) % 8;

/**
 * Writes an entry atomically: header, offsets (f64), ids (i32), labels (i32, when not implicit).
 * @example
 * writeCache('.cache/data', key, store, { format: 'text', records: 10, badLines: 0, badLineMessages: [] })
 */
export function writeCache(dir: string, key: string, store: TokenStore, meta: CacheMeta): void {
  mkdirSync(dir, { recursive: true });
  let header = Buffer.from(JSON.stringify({ key, docs: storeCount(store), tokens: storeTokens(store), labels: store.labels !== null, endian: 'le', meta }));
  header = Buffer.concat([header, Buffer.alloc(pad8(header.length), 0x20)]);
  const head = Buffer.alloc(16);
  head.write(MAGIC, 0, 'latin1');
  head.writeUInt32LE(header.length, 8);
  const parts = [head, header, bytes(store.offsets), bytes(store.ids)];
  if (store.labels !== null) parts.push(bytes(store.labels));
  const final = entryPath(dir, key);
  const tmp = `${final}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  try {
    // Part by part: concatenating first would copy the whole corpus once more.
    const fd = openSync(tmp, 'w');
    try {
      for (const p of parts) for (let at = 0; at < p.length;) at += writeSync(fd, p, at);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, final);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new Error(`data cache: cannot write ${final}: ${(e as Error).message}`, { cause: e });
  }
}

function bytes(a: Int32Array | Float64Array): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

/**
 * The entry for key, or null when absent, from another version, or damaged (then rebuilt by the caller).
 * @example
 * const hit = readCache('.cache/data', key); if (hit) builder.addStore(hit.store);
 */
export function readCache(dir: string, key: string): { store: TokenStore; meta: CacheMeta } | null {
  let buf: Buffer;
  try {
    buf = readFileSync(entryPath(dir, key));
  } catch {
    return null;
  }
  try {
    if (buf.length < 16 || buf.toString('latin1', 0, 8) !== MAGIC) return null;
    const hlen = buf.readUInt32LE(8);
    const h = JSON.parse(buf.toString('utf8', 16, 16 + hlen)) as { key: string; docs: number; tokens: number; labels: boolean; meta: CacheMeta };
    if (h.key !== key) return null;
    let at = 16 + hlen;
    const need = at + (h.docs + 1) * 8 + h.tokens * 4 * (h.labels ? 2 : 1);
    if (buf.length !== need) return null;
    // Sections start at multiples of 8 in the file; view them in place when the buffer is aligned
    // too (large reads are), else copy (a small read may sit unaligned in Node's buffer pool).
    const aligned = buf.byteOffset % 8 === 0;
    const take = <T>(n: number, make: (b: ArrayBufferLike, off: number, len: number) => T, size: number): T => {
      const start = at;
      at += n * size;
      if (aligned) return make(buf.buffer, buf.byteOffset + start, n);
      return make(Uint8Array.prototype.slice.call(buf, start, at).buffer, 0, n);
    };
    const offsets = take(h.docs + 1, (b, o, n) => new Float64Array(b, o, n), 8);
    const ids = take(h.tokens, (b, o, n) => new Int32Array(b, o, n), 4);
    const labels = h.labels ? take(h.tokens, (b, o, n) => new Int32Array(b, o, n), 4) : null;
    if (offsets[0] !== 0 || offsets[h.docs] !== h.tokens) return null;
    return { store: { ids, labels, offsets }, meta: h.meta };
  } catch {
    return null;
  }
}
