// Datasets over tokenized documents, and their batches. A packed dataset's examples are seqLen
// rows cut from the concatenated documents; a padded one's are single documents cut to seqLen
// and right-padded per batch. Shuffling is a seeded permutation per epoch, so the same (seed,
// epoch) gives the same batches and a resume from startStep yields exactly what would have come next.
import { type Batch, type Row, collate, packedRow, packedRowCount, padRow } from './packing.js';
import { STREAM_EPOCH, SeededRandom, permutation } from './shuffle.js';
import type { DocView } from './token_store.js';

export interface BatchOptions {
  readonly batchSize: number;
  /** default: the dataset's seed (loadDataset's) */
  readonly seed?: number;
  readonly epoch?: number;
  /** batches of this epoch already consumed (a resume): the first yielded batch is this step's */
  readonly startStep?: number;
  /** default true; false keeps the file order */
  readonly shuffle?: boolean;
  /** drop the last, smaller batch of the epoch (default false) */
  readonly dropLast?: boolean;
}

function checkInt(name: string, v: number, min: number): void {
  if (!Number.isInteger(v) || v < min) throw new RangeError(`Dataset.batches: ${name} must be an integer >= ${min}, got ${v}`);
}

/**
 * Examples with seeded, resumable batching.
 * @example
 * for (const batch of ds.batches({ batchSize: 8, epoch: 0 })) trainStep(batch);
 * // resume after 120 steps of epoch 3:
 * for (const batch of ds.batches({ batchSize: 8, epoch: 3, startStep: 120 })) trainStep(batch);
 */
export abstract class Dataset {
  constructor(readonly view: DocView, readonly seqLen: number, readonly padId: number, readonly seed: number) {}

  abstract readonly length: number;
  abstract readonly packed: boolean;
  /** Example i: a packed row (with positionIds/documentIds), or a document cut to seqLen (unpadded). */
  abstract example(i: number): Row;
  protected abstract collateIndices(indices: readonly number[]): Batch;

  /** Batches in one epoch. */
  stepsPerEpoch(batchSize: number, dropLast = false): number {
    checkInt('batchSize', batchSize, 1);
    return dropLast ? Math.floor(this.length / batchSize) : Math.ceil(this.length / batchSize);
  }

  /** The example order of an epoch: a permutation that depends only on (seed, epoch). */
  order(epoch: number, seed = this.seed, shuffle = true): Int32Array {
    checkInt('epoch', epoch, 0);
    if (!shuffle) return Int32Array.from({ length: this.length }, (_, i) => i);
    return permutation(this.length, new SeededRandom(seed, STREAM_EPOCH, epoch));
  }

  *batches(opts: BatchOptions): Generator<Batch, void, undefined> {
    const { batchSize, epoch = 0, startStep = 0, dropLast = false } = opts;
    checkInt('startStep', startStep, 0);
    const steps = this.stepsPerEpoch(batchSize, dropLast);
    if (startStep > steps) throw new RangeError(`Dataset.batches: startStep ${startStep} is past the ${steps} steps of an epoch (batchSize ${batchSize})`);
    const order = this.order(epoch, opts.seed ?? this.seed, opts.shuffle ?? true);
    for (let s = startStep; s < steps; s++) {
      yield this.collateIndices(Array.from(order.subarray(s * batchSize, Math.min((s + 1) * batchSize, order.length))));
    }
  }

  protected checkIndex(i: number): void {
    if (!Number.isInteger(i) || i < 0 || i >= this.length) throw new RangeError(`Dataset.example: index ${i} is out of range (length ${this.length})`);
  }
}

/**
 * Documents packed into seqLen rows (pretraining); every row is seqLen long, the last one padded.
 * @example
 * const ds = new PackedDataset(view, 1024, eosId, 0); ds.example(0).positionIds
 */
export class PackedDataset extends Dataset {
  readonly packed = true;
  get length(): number { return packedRowCount(this.view, this.seqLen); }

  example(i: number): Row {
    this.checkIndex(i);
    return packedRow(this.view, this.seqLen, i, this.padId);
  }

  protected collateIndices(indices: readonly number[]): Batch {
    return collate(indices.map((i) => this.example(i)));
  }
}

/**
 * One document per example (SFT), cut to seqLen; batches are right-padded to their longest row,
 * or to seqLen with padding 'max' (fixed shapes).
 * @example
 * const ds = new PaddedDataset(view, 2048, padId, 0, 'longest');
 */
export class PaddedDataset extends Dataset {
  readonly packed = false;
  constructor(view: DocView, seqLen: number, padId: number, seed: number, readonly padding: 'longest' | 'max' = 'longest') {
    super(view, seqLen, padId, seed);
  }

  get length(): number { return this.view.count; }

  /** Documents longer than seqLen (their tail is cut). */
  get truncated(): number {
    let n = 0;
    for (let j = 0; j < this.view.count; j++) if (this.view.docLength(j) > this.seqLen) n++;
    return n;
  }

  example(i: number): Row {
    this.checkIndex(i);
    const ex = this.view.doc(i, 0, Math.min(this.view.docLength(i), this.seqLen));
    return { ...ex, attentionMask: new Array<number>(ex.inputIds.length).fill(1) };
  }

  protected collateIndices(indices: readonly number[]): Batch {
    const rows = indices.map((i) => this.example(i));
    const length = this.padding === 'max' ? this.seqLen : Math.max(...rows.map((r) => r.inputIds.length));
    return collate(rows.map((r) => padRow(r, length, this.padId)));
  }
}
