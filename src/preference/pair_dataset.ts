// Paired preference examples and their batches: each batch is one right-padded block of 2B rows,
// the B chosen sequences then the B rejected ones (TRL's concatenated layout), so one forward gives
// every log-prob. Order is a seeded permutation per epoch, as src/data's Dataset: the same (seed,
// epoch) gives the same batches, and a resume from startStep yields exactly what would have come next.
import type { BatchOptions } from '../data/dataset.js';
import type { Example } from '../data/example.js';
import { type Batch, collate, padRow } from '../data/packing.js';
import { STREAM_EPOCH, SeededRandom, permutation } from '../data/shuffle.js';

/**
 * Two rows scored together. Paired methods: the chosen and the rejected completion. KTO: the
 * completion (`chosen`) and its KL row (`rejected`: the same prompt with another example's
 * completion), with `desirable` set.
 */
export interface PairExample {
  chosen: Example;
  rejected: Example;
  /** KTO's label: true = desirable */
  desirable?: boolean;
}

/** Per-example reference log-probs, computed once before training (or zeros: reference-free). */
export interface ReferenceLogps {
  chosen: Float64Array;
  rejected: Float64Array;
}

export interface PairBatch {
  /** [2B, T]: chosen rows 0..B-1, rejected rows B..2B-1; labels -100 on prompt and padding */
  rows: Batch;
  /** B */
  pairs: number;
  /** the examples' dataset indices */
  indices: number[];
  /** the reference log-probs of these pairs, once computed */
  reference: { chosen: number[]; rejected: number[] } | null;
  /** KTO's labels (null for paired data) */
  desirable: boolean[] | null;
}

/**
 * Pairs with seeded, resumable batching (the Trainer's BatchSource).
 * @example for (const b of ds.batches({ batchSize: 4, epoch: 0 })) step(b.rows)
 */
export class PairDataset {
  /** set by computeReferenceLogps (or left null for the reference-free methods) */
  reference: ReferenceLogps | null = null;

  constructor(readonly examples: readonly PairExample[], readonly padId: number, readonly seed: number) {}

  get length(): number {
    return this.examples.length;
  }

  /** The batch of these examples (in this order). */
  collate(indices: readonly number[]): PairBatch {
    const rows = [...indices.map((i) => this.examples[i].chosen), ...indices.map((i) => this.examples[i].rejected)];
    const length = Math.max(...rows.map((r) => r.inputIds.length));
    const ref = this.reference;
    return {
      rows: collate(rows.map((r) => padRow(r, length, this.padId))),
      pairs: indices.length,
      indices: [...indices],
      reference: ref ? { chosen: indices.map((i) => ref.chosen[i]), rejected: indices.map((i) => ref.rejected[i]) } : null,
      desirable: indices.every((i) => this.examples[i].desirable !== undefined) ? indices.map((i) => this.examples[i].desirable!) : null,
    };
  }

  *batches(opts: BatchOptions): Generator<PairBatch> {
    for (const indices of indexBatches(this.length, this.seed, opts, 'PairDataset')) yield this.collate(indices);
  }
}

/**
 * The example indices of each batch of an epoch: a seeded permutation per (seed, epoch) (or file
 * order with shuffle false), cut into batches, starting at startStep (a resume).
 * @example [...indexBatches(10, 0, { batchSize: 4, epoch: 1 }, 'MyData')] // three index arrays
 */
export function* indexBatches(n: number, seed: number, opts: BatchOptions, what: string): Generator<number[]> {
  const { batchSize, epoch = 0, startStep = 0 } = opts;
  if (!(Number.isInteger(batchSize) && batchSize >= 1)) throw new RangeError(`${what}.batches: batchSize must be an integer >= 1, got ${batchSize}`);
  const order = opts.shuffle === false ? Int32Array.from({ length: n }, (_, i) => i) : permutation(n, new SeededRandom(opts.seed ?? seed, STREAM_EPOCH, epoch));
  const steps = opts.dropLast ? Math.floor(n / batchSize) : Math.ceil(n / batchSize);
  if (startStep > steps) throw new RangeError(`${what}.batches: startStep ${startStep} is past the ${steps} steps of an epoch (batchSize ${batchSize})`);
  for (let s = startStep; s < steps; s++) yield Array.from(order.subarray(s * batchSize, Math.min((s + 1) * batchSize, n)));
}
