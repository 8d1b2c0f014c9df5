// The unit every format produces and packing consumes: token ids with aligned labels, -100 where
// no loss is taken (Hugging Face's convention; the model shifts labels by one inside its loss).

/** -100: the label of a position that takes no loss (PyTorch cross_entropy's ignore_index). */
export const IGNORE_INDEX = -100;

/**
 * One training example; labels align with inputIds.
 * @example
 * const ex: Example = { inputIds: [72, 105, 50256], labels: [-100, 105, 50256] }; // no loss on the prompt token
 */
export interface Example {
  readonly inputIds: number[];
  readonly labels: number[];
}
