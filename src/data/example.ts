// The unit every format produces and packing consumes: token ids with aligned labels, -100 where
// no loss is taken (Hugging Face's convention; the model shifts labels by one inside its loss).
// checkTokenIds is the one range check of every example, whatever its format, made while reading
// so a bad id names its record instead of surfacing as an index error at the first training step.
import { DataError, type Where } from './errors.js';

/** -100: the label of a position that takes no loss (PyTorch cross_entropy's ignore_index). */
export const IGNORE_INDEX = -100;

/** Ids are stored as int32 (token_store.ts): without a vocabulary size this is the bound. */
const INT32_LIMIT = 2 ** 31;

/**
 * One training example; labels align with inputIds.
 * @example
 * const ex: Example = { inputIds: [72, 105, 50256], labels: [-100, 105, 50256] }; // no loss on the prompt token
 */
export interface Example {
  readonly inputIds: number[];
  readonly labels: number[];
}

/**
 * Throws a DataError unless every id is an integer in [0, vocabSize) (labels: or -100); without
 * vocabSize, in [0, 2^31). `tokenizer`: the ids came from the tokenizer, not from the record.
 * @example
 * checkTokenIds({ inputIds: [5, 70000], labels: [5, 70000] }, { file: 'a.jsonl', line: 3 }, { vocabSize: 50257 })
 * // DataError: a.jsonl:3: field "input_ids[1]" must be a token id in [0, 50257) (the vocabulary), got 70000
 */
export function checkTokenIds(ex: Example, where: Where, opts: { vocabSize?: number; tokenizer?: boolean } = {}): void {
  const limit = opts.vocabSize ?? INT32_LIMIT;
  const check = (ids: readonly number[], field: string, ignore: boolean): void => {
    for (let i = 0; i < ids.length; i++) {
      const x = ids[i];
      if (Number.isInteger(x) && x >= 0 && x < limit) continue;
      if (ignore && x === IGNORE_INDEX) continue;
      const range = opts.vocabSize === undefined ? `[0, 2^31)` : `[0, ${limit}) (the vocabulary)`;
      const why = opts.tokenizer ? '; the tokenizer made it: does it match the model?' : '';
      throw new DataError(where, `field "${field}[${i}]" must be a token id in ${range}${ignore ? ' or -100' : ''}, got ${x}${why}`);
    }
  };
  check(ex.inputIds, 'input_ids', false);
  check(ex.labels, 'labels', true);
}
