// Constrained decoding for OpenAI's response_format {type: 'json_object'}: before each token is
// picked, every token whose text would make the output stop being the beginning of a JSON object
// gets logit -inf, and eos is allowed only once the object is complete (outlines / llama.cpp
// grammars do the same with a general grammar). A token's text is what it adds after a plain
// prefix token, so SentencePiece's leading-space pieces count their space.
import { JsonPrefix } from './json_prefix.js';

/**
 * The text each token adds to a decoded sequence; null for tokens that add nothing (special
 * tokens) or only part of a UTF-8 character (they are never allowed under the constraint).
 * @example tokenPieces((ids) => tok.decode(ids, { skipSpecialTokens: true }), 49152, tok.encode('a', { addSpecialTokens: false }))
 */
export function tokenPieces(decode: (ids: number[]) => string, vocabSize: number, prefix: number[]): (string | null)[] {
  const head = decode(prefix);
  return Array.from({ length: vocabSize }, (_, id) => {
    const text = decode([...prefix, id]);
    if (!text.startsWith(head)) return null;
    const piece = text.slice(head.length);
    return piece === '' || piece.includes('\uFFFD') ? null : piece;
  });
}

/** Per-row JSON state as a logits processor for generateStream (its logitsProcessor option). */
export class JsonObjectConstraint {
  private readonly rows = new Map<number, { state: JsonPrefix; seen: number }>();

  constructor(private readonly pieces: readonly (string | null)[], private readonly eos: readonly number[]) {
    if (!eos.length) throw new Error('JsonObjectConstraint: needs an eos token to end the object with');
  }

  /** Masks scores in place: only tokens that keep row's output a valid JSON-object prefix stay. */
  readonly process = (row: number, scores: Float32Array, generated: readonly number[]): void => {
    let r = this.rows.get(row);
    if (!r) this.rows.set(row, (r = { state: new JsonPrefix({ objectOnly: true }), seen: 0 }));
    for (; r.seen < generated.length; r.seen++) r.state.feedText(this.pieces[generated[r.seen]] ?? '');
    const { state } = r;
    for (let id = 0; id < scores.length; id++) {
      if (scores[id] === -Infinity) continue;
      const piece = this.pieces[id];
      const ok = this.eos.includes(id) ? state.complete : piece !== null && piece !== undefined && state.clone().feedText(piece);
      if (!ok) scores[id] = -Infinity;
    }
  };
}
