// A SentencePiece tokenizer.model (a serialized ModelProto) from a GGUF "llama" vocabulary: the
// pieces with scores and types, a BPE trainer_spec with byte fallback and the special ids, and
// Llama's normalizer (identity, a dummy prefix, spaces kept). Field numbers as in
// google/sentencepiece's sentencepiece_model.proto (the ones tokenizer/sentencepiece_model.ts reads).

/** Protobuf wire-format writer for the few field kinds a ModelProto needs. */
class Proto {
  private parts: Uint8Array[] = [];
  private varint(v: number): void {
    const out: number[] = [];
    do {
      let b = v % 128;
      v = Math.floor(v / 128);
      if (v > 0) b |= 0x80;
      out.push(b);
    } while (v > 0);
    this.parts.push(Uint8Array.from(out));
  }
  int(field: number, v: number): this { this.varint(field * 8); this.varint(v); return this; }
  float(field: number, v: number): this {
    this.varint(field * 8 + 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.parts.push(b);
    return this;
  }
  bytes(field: number, b: Uint8Array): this { this.varint(field * 8 + 2); this.varint(b.length); this.parts.push(b); return this; }
  str(field: number, s: string): this { return this.bytes(field, Buffer.from(s, 'utf8')); }
  done(): Uint8Array { return Buffer.concat(this.parts); }
}

export interface SpmVocab {
  pieces: string[];
  scores: number[];
  /** SentencePiece piece types (1 normal ... 6 byte), as GGUF's token_type stores them */
  types: number[];
  /** special ids; -1 (or null) where the vocabulary has none */
  unk: number | null;
  bos: number | null;
  eos: number | null;
  pad: number | null;
}

/**
 * tokenizer.model bytes for a Llama-style (BPE, byte-fallback) SentencePiece vocabulary.
 * @example writeFileSync('tokenizer.model', sentencePieceModelBytes({ pieces, scores, types, unk: 0, bos: 1, eos: 2, pad: null }))
 */
export function sentencePieceModelBytes(v: SpmVocab): Uint8Array {
  const p = new Proto();
  v.pieces.forEach((piece, i) => p.bytes(1, new Proto().str(1, piece).float(2, v.scores[i] ?? 0).int(3, v.types[i] ?? 1).done()));
  const trainer = new Proto().int(3, 2).int(35, v.types.includes(6) ? 1 : 0).int(40, v.unk ?? 0);
  if (v.bos !== null) trainer.int(41, v.bos);
  if (v.eos !== null) trainer.int(42, v.eos);
  if (v.pad !== null) trainer.int(43, v.pad);
  p.bytes(2, trainer.done());
  p.bytes(3, new Proto().str(1, 'identity').int(3, 1).int(4, 0).int(5, 1).done());
  return p.done();
}
