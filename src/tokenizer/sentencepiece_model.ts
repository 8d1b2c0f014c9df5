// SentencePiece tokenizer.model (a serialized ModelProto): the pieces (piece, score, type) and the
// trainer/normalizer settings that change encoding. Parsed with the small reader in protobuf.ts.
// Reference: google/sentencepiece src/sentencepiece_model.proto (field numbers below).
import { ProtoError, proto, readFields } from './protobuf.js';

/** ModelProto.SentencePiece.Type */
export const PieceType = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

export interface SentencePiece {
  readonly piece: string;
  readonly score: number;
  readonly type: number;
}

export interface SentencePieceModel {
  readonly pieces: readonly SentencePiece[];
  /** TrainerSpec.model_type: 1 unigram, 2 bpe, 3 word, 4 char */
  readonly modelType: number;
  readonly byteFallback: boolean;
  readonly treatWhitespaceAsSuffix: boolean;
  readonly unkId: number;
  readonly bosId: number;
  readonly eosId: number;
  readonly padId: number;
  /** what <unk> decodes to (TrainerSpec.unk_surface, default " ⁇ ") */
  readonly unkSurface: string;
  readonly normalizerName: string;
  readonly precompiledCharsmap: Uint8Array;
  readonly addDummyPrefix: boolean;
  readonly removeExtraWhitespaces: boolean;
  readonly escapeWhitespaces: boolean;
}

function parsePiece(buf: Uint8Array): SentencePiece {
  let piece = '';
  let score = 0;
  let type: number = PieceType.NORMAL;
  for (const f of readFields(buf)) {
    if (f.num === 1) piece = proto.string(f);
    else if (f.num === 2) score = proto.float(f);
    else if (f.num === 3) type = proto.int(f);
  }
  if (piece === '') throw new ProtoError('a piece is empty');
  if (type < 1 || type > 6) throw new ProtoError(`piece ${JSON.stringify(piece)} has unknown type ${type}`);
  return { piece, score, type };
}

/**
 * Parses tokenizer.model bytes. Errors name the file.
 * @example
 * const m = parseSentencePieceModel(readFileSync('tokenizer.model'), 'tokenizer.model');
 * m.pieces[1].piece // '<s>'
 */
export function parseSentencePieceModel(bytes: Uint8Array, file: string): SentencePieceModel {
  try {
    const pieces: SentencePiece[] = [];
    // Proto2 defaults, overwritten by whatever the file sets.
    const m = {
      modelType: 1, byteFallback: false, treatWhitespaceAsSuffix: false,
      unkId: 0, bosId: 1, eosId: 2, padId: -1, unkSurface: ' \u2047 ',
      normalizerName: '', precompiledCharsmap: new Uint8Array(0) as Uint8Array,
      addDummyPrefix: true, removeExtraWhitespaces: true, escapeWhitespaces: true,
    };
    let sawNormalizer = false;
    for (const f of readFields(bytes)) {
      if (f.num === 1) pieces.push(parsePiece(proto.bytes(f)));
      else if (f.num === 2) {
        for (const t of readFields(proto.bytes(f))) {
          if (t.num === 3) m.modelType = proto.int(t);
          else if (t.num === 24) m.treatWhitespaceAsSuffix = proto.bool(t);
          else if (t.num === 35) m.byteFallback = proto.bool(t);
          else if (t.num === 40) m.unkId = proto.int(t);
          else if (t.num === 41) m.bosId = proto.int(t);
          else if (t.num === 42) m.eosId = proto.int(t);
          else if (t.num === 43) m.padId = proto.int(t);
          else if (t.num === 44) m.unkSurface = proto.string(t);
        }
      } else if (f.num === 3) {
        sawNormalizer = true;
        for (const n of readFields(proto.bytes(f))) {
          if (n.num === 1) m.normalizerName = proto.string(n);
          else if (n.num === 2) m.precompiledCharsmap = proto.bytes(n);
          else if (n.num === 3) m.addDummyPrefix = proto.bool(n);
          else if (n.num === 4) m.removeExtraWhitespaces = proto.bool(n);
          else if (n.num === 5) m.escapeWhitespaces = proto.bool(n);
        }
      }
    }
    if (pieces.length === 0) throw new ProtoError('no pieces (is this a SentencePiece model?)');
    if (!sawNormalizer) throw new ProtoError('no normalizer_spec (is this a SentencePiece model?)');
    if (m.unkId < 0 || m.unkId >= pieces.length) throw new ProtoError(`trainer_spec.unk_id ${m.unkId} outside 0..${pieces.length - 1}`);
    return { pieces, ...m };
  } catch (e) {
    if (e instanceof ProtoError) throw new Error(`${file}: corrupt SentencePiece model: ${e.message}`);
    throw e;
  }
}
