// SentencePiece BPE encoder/decoder over a parsed tokenizer.model, matching the C++ library's
// EncodeAsPieces / DecodePieces: identity normalization with the ▁ (U+2581) whitespace escape and
// optional dummy prefix, score-ordered merges, unused-piece resegmentation, byte fallback (<0xNN>).
// Reference: google/sentencepiece src/bpe_model.cc, normalizer.cc, sentencepiece_processor.cc.
import { PieceType, type SentencePieceModel } from './sentencepiece_model.js';

export const SPACE = '\u2581';

interface Pair { left: number; right: number; score: number; len: number }

/** Max-heap on score, ties to the leftmost pair (bpe_model.cc SymbolPairComparator). */
class PairHeap {
  private items: Pair[] = [];
  get size(): number { return this.items.length; }
  private before(a: Pair, b: Pair): boolean {
    return a.score > b.score || (a.score === b.score && a.left < b.left);
  }
  push(p: Pair): void {
    const h = this.items;
    h.push(p);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(h[i], h[parent])) break;
      [h[i], h[parent]] = [h[parent], h[i]];
      i = parent;
    }
  }
  pop(): Pair {
    const h = this.items;
    const top = h[0];
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < h.length && this.before(h[l], h[m])) m = l;
        if (r < h.length && this.before(h[r], h[m])) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m], h[i]];
        i = m;
      }
    }
    return top;
  }
}

const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const utf8Encoder = new TextEncoder();

/** Length (1..4) of the valid UTF-8 character at bytes[i], or 0 when it is malformed. */
function utf8CharLength(bytes: number[], i: number): number {
  const b = bytes[i];
  const n = b < 0x80 ? 1 : (b & 0xe0) === 0xc0 ? 2 : (b & 0xf0) === 0xe0 ? 3 : (b & 0xf8) === 0xf0 ? 4 : 0;
  if (n === 0 || i + n > bytes.length) return 0;
  try {
    utf8Decoder.decode(Uint8Array.from(bytes.slice(i, i + n)));
    return n;
  } catch {
    return 0;
  }
}

/**
 * A SentencePiece BPE processor (the subset of spm.SentencePieceProcessor transformers uses).
 * @example
 * const sp = new SentencePieceBpe(parseSentencePieceModel(bytes, 'tokenizer.model'));
 * sp.encodeAsPieces('Hello world') // ['▁Hello', '▁world']
 */
export class SentencePieceBpe {
  /** NORMAL, USER_DEFINED and UNUSED pieces: the ones merges may produce (model_interface.cc). */
  private readonly mergeable = new Map<string, number>();
  /** CONTROL, UNKNOWN and BYTE pieces: reachable by PieceToId only. */
  private readonly reserved = new Map<string, number>();
  private readonly userDefined: string[] = [];

  constructor(readonly model: SentencePieceModel, readonly addDummyPrefix = model.addDummyPrefix) {
    model.pieces.forEach((p, id) => {
      const normal = p.type === PieceType.NORMAL || p.type === PieceType.USER_DEFINED || p.type === PieceType.UNUSED;
      const map = normal ? this.mergeable : this.reserved;
      if (!map.has(p.piece)) map.set(p.piece, id);
      if (p.type === PieceType.USER_DEFINED) this.userDefined.push(p.piece);
    });
    // Longest first, so the prefix match below finds the longest user-defined symbol.
    this.userDefined.sort((a, b) => b.length - a.length);
  }

  get size(): number { return this.model.pieces.length; }

  pieceToId(piece: string): number {
    return this.mergeable.get(piece) ?? this.reserved.get(piece) ?? this.model.unkId;
  }

  idToPiece(id: number): string | undefined { return this.model.pieces[id]?.piece; }

  isType(id: number, type: number): boolean { return this.model.pieces[id]?.type === type; }

  /** normalizer.cc with an identity rule: optional dummy prefix, ' ' -> ▁, optional whitespace squeeze. */
  normalize(text: string): string {
    if (text === '') return '';
    const m = this.model;
    let t = text;
    if (m.removeExtraWhitespaces) t = t.replace(/ +/g, ' ').replace(/^ | $/g, '');
    if (t === '') return '';
    if (this.addDummyPrefix) t = ' ' + t;
    return m.escapeWhitespaces ? t.replaceAll(' ', SPACE) : t;
  }

  /** EncodeAsPieces: normalize, BPE-merge by score, resegment unused pieces, split unknowns into bytes. */
  encodeAsPieces(text: string): string[] {
    const symbols = this.initialSymbols(this.normalize(text));
    if (symbols.length === 0) return [];
    const prev = symbols.map((_, i) => i - 1);
    const next = symbols.map((_, i) => (i + 1 < symbols.length ? i + 1 : -1));
    const frozen = symbols.map((s) => s.frozen);
    const piece = symbols.map((s) => s.piece);
    const revMerge = new Map<string, [string, string]>();
    const heap = new PairHeap();
    const tryPair = (left: number, right: number): void => {
      if (left === -1 || right === -1 || frozen[left] || frozen[right]) return;
      const merged = piece[left] + piece[right];
      const id = this.mergeable.get(merged);
      if (id === undefined) return;
      heap.push({ left, right, score: this.model.pieces[id].score, len: merged.length });
      if (this.isType(id, PieceType.UNUSED)) revMerge.set(merged, [piece[left], piece[right]]);
    };
    for (let i = 1; i < symbols.length; i++) tryPair(i - 1, i);
    while (heap.size > 0) {
      const top = heap.pop();
      // Skip pairs made stale by an earlier merge (either side changed or vanished).
      if (piece[top.left] === '' || piece[top.right] === '' || piece[top.left].length + piece[top.right].length !== top.len) continue;
      piece[top.left] += piece[top.right];
      piece[top.right] = '';
      next[top.left] = next[top.right];
      if (next[top.right] !== -1) prev[next[top.right]] = top.left;
      tryPair(prev[top.left], top.left);
      tryPair(top.left, next[top.left]);
    }
    const out: string[] = [];
    const resegment = (w: string): void => {
      const id = this.pieceToId(w);
      const split = this.isType(id, PieceType.UNUSED) ? revMerge.get(w) : undefined;
      if (split === undefined) return this.emit(w, id, out);
      resegment(split[0]);
      resegment(split[1]);
    };
    for (let i = 0; i !== -1; i = next[i]) resegment(piece[i]);
    return out;
  }

  /** One symbol per character, except that user-defined pieces stay whole and never merge. */
  private initialSymbols(normalized: string): { piece: string; frozen: boolean }[] {
    const out: { piece: string; frozen: boolean }[] = [];
    let i = 0;
    while (i < normalized.length) {
      const ud = this.userDefined.find((u) => normalized.startsWith(u, i));
      if (ud !== undefined) {
        out.push({ piece: ud, frozen: true });
        i += ud.length;
        continue;
      }
      const ch = String.fromCodePoint(normalized.codePointAt(i)!);
      out.push({ piece: ch, frozen: false });
      i += ch.length;
    }
    return out;
  }

  /** An unknown piece becomes its UTF-8 bytes when the model has byte fallback. */
  private emit(w: string, id: number, out: string[]): void {
    if (id === this.model.unkId && this.model.byteFallback) {
      for (const b of utf8Encoder.encode(w)) out.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
    } else {
      out.push(w);
    }
  }

  /**
   * DecodePieces: control pieces vanish, <unk> becomes unk_surface, runs of byte pieces become UTF-8
   * (a malformed byte becomes U+FFFD), ▁ becomes ' '. With a dummy prefix (or whitespace squeezing),
   * the first piece that starts the text loses its leading ▁, once.
   */
  decodePieces(pieces: readonly string[]): string {
    let text = '';
    let bytes: number[] = [];
    const flush = (): void => {
      let i = 0;
      while (i < bytes.length) {
        const n = utf8CharLength(bytes, i);
        text += n === 0 ? '\uFFFD' : utf8Decoder.decode(Uint8Array.from(bytes.slice(i, i + n)));
        i += n === 0 ? 1 : n;
      }
      bytes = [];
    };
    const stripsBosSpace = this.addDummyPrefix || this.model.removeExtraWhitespaces;
    let isBosWs = true;
    let bosWsSeen = false;
    for (const p of pieces) {
      const id = this.pieceToId(p);
      if (this.isType(id, PieceType.BYTE)) {
        bytes.push(parseInt(p.slice(3, 5), 16));
        continue;
      }
      flush();
      if (bosWsSeen || text !== '') isBosWs = false;
      bosWsSeen = false;
      if (this.isType(id, PieceType.CONTROL)) continue;
      if (this.isType(id, PieceType.UNKNOWN)) {
        text += p === this.idToPiece(id) ? this.model.unkSurface : p;
        continue;
      }
      let s = p;
      if (isBosWs && stripsBosSpace && s.startsWith(SPACE)) {
        s = s.slice(1);
        // Squeezed whitespace means every leading ▁ is dropped, so keep looking.
        bosWsSeen = !this.model.removeExtraWhitespaces;
      }
      text += s.replaceAll(SPACE, ' ');
    }
    flush();
    return text;
  }
}
