// On-disk cache of tokenized files: one file per data file, named by a hash of what shaped its
// tokens (path, size, mtime, format, encoder options, tokenizer identity). It holds the documents
// before splitting, packing and truncation, so changing seqLen, pack or the split reuses it.
// Written to a temporary name and renamed, so a crash never leaves a half-written entry; a checksum
// over everything after the fixed head catches an entry damaged later (disk, copy, truncation),
// which is then rebuilt with a warning instead of feeding wrong tokens to training.
import { createHash } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Tokenizer } from '../tokenizer/index.js';
import { FNV_OFFSET, fnv1a32 } from './checksum.js';
import { type TokenStore, storeCount, storeTokens } from './token_store.js';

/** Head: magic (8 bytes), header length (u32 LE), checksum of the rest (u32 LE, fnv1a32). */
const MAGIC = 'KDATA002';
const HEAD_BYTES = 16;
/** Bump when tokenization or the file layout changes: old entries are then ignored. */
const CACHE_VERSION = 2;

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
 * Writes an entry atomically: head, header, offsets (f64), ids (i32), labels (i32, when not implicit).
 * @example
 * writeCache('.cache/data', key, store, { format: 'text', records: 10, badLines: 0, badLineMessages: [] })
 */
export function writeCache(dir: string, key: string, store: TokenStore, meta: CacheMeta): void {
  mkdirSync(dir, { recursive: true });
  let header = Buffer.from(JSON.stringify({ key, docs: storeCount(store), tokens: storeTokens(store), labels: store.labels !== null, endian: 'le', meta }));
  header = Buffer.concat([header, Buffer.alloc(pad8(header.length), 0x20)]);
  const body = [header, bytes(store.offsets), bytes(store.ids)];
  if (store.labels !== null) body.push(bytes(store.labels));
  const head = Buffer.alloc(HEAD_BYTES);
  head.write(MAGIC, 0, 'latin1');
  head.writeUInt32LE(header.length, 8);
  head.writeUInt32LE(body.reduce((h, p) => fnv1a32(p, h), FNV_OFFSET), 12);
  const parts = [head, ...body];
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

type Entry = { store: TokenStore; meta: CacheMeta };

/** The entry in buf, or what is wrong with it. */
function parseEntry(buf: Buffer, key: string): Entry | string {
  if (buf.length < HEAD_BYTES || buf.toString('latin1', 0, 8) !== MAGIC) return 'not a cache entry';
  const hlen = buf.readUInt32LE(8);
  if ((buf.length - HEAD_BYTES) % 4 !== 0 || HEAD_BYTES + hlen > buf.length) return 'truncated';
  if (fnv1a32(buf.subarray(HEAD_BYTES)) !== buf.readUInt32LE(12)) return 'checksum mismatch';
  const h = JSON.parse(buf.toString('utf8', HEAD_BYTES, HEAD_BYTES + hlen)) as { key: string; docs: number; tokens: number; labels: boolean; meta: CacheMeta };
  if (h.key !== key) return 'written for another key';
  let at = HEAD_BYTES + hlen;
  if (buf.length !== at + (h.docs + 1) * 8 + h.tokens * 4 * (h.labels ? 2 : 1)) return 'sizes disagree with its header';
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
  if (offsets[0] !== 0 || offsets[h.docs] !== h.tokens) return 'bad document offsets';
  return { store: { ids, labels, offsets }, meta: h.meta };
}

/**
 * The entry for key, or null when absent or damaged (truncated, garbled: then a warning says so and
 * the caller rebuilds it).
 * @example
 * const hit = readCache('.cache/data', key); if (hit) builder.addStore(hit.store);
 */
export function readCache(dir: string, key: string): Entry | null {
  const path = entryPath(dir, key);
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch {
    return null;
  }
  let entry: Entry | string;
  try {
    entry = parseEntry(buf, key);
  } catch (e) {
    entry = (e as Error).message;
  }
  if (typeof entry !== 'string') return entry;
  process.emitWarning(`data cache: ${path} is damaged (${entry}); rebuilding it`, 'KestrelWarning');
  return null;
}
