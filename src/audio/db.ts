// Decibels as torchaudio.functional.amplitude_to_DB: multiplier log10(max(x, amin)) minus
// multiplier log10(max(amin, ref)), multiplier 10 for power and 20 for magnitude, then with top_db
// each spectrogram (the last three dims packed together, as torchaudio packs channels) is floored
// at its own maximum minus top_db.
import { clamp, maximum } from '../ops/elementwise.js';
import { max } from '../ops/reduce.js';
import { reshape } from '../ops/view.js';
import { checkNumber } from '../io/check.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';

export interface AmplitudeToDBOptions {
  /** 'power' (10 log10, default) or 'magnitude' (20 log10) */
  stype?: 'power' | 'magnitude';
  /** floor at max - topDb per spectrogram (default none) */
  topDb?: number | null;
  /** default 1e-10 */
  amin?: number;
  /** reference value (0 dB), default 1 */
  ref?: number;
}

/**
 * @example amplitudeToDB(melSpec, { stype: 'power', topDb: 80 })
 */
export function amplitudeToDB(x: Tensor, opts: AmplitudeToDBOptions = {}): Tensor {
  const stype = opts.stype ?? 'power';
  if (stype !== 'power' && stype !== 'magnitude') throw new Error(`amplitudeToDB: stype must be 'power' or 'magnitude', got '${String(stype)}'`);
  const amin = checkNumber(opts.amin ?? 1e-10, { above: 0 }, 'amplitudeToDB amin');
  const ref = checkNumber(opts.ref ?? 1, { above: 0 }, 'amplitudeToDB ref');
  const topDb = opts.topDb ?? null;
  if (topDb !== null) checkNumber(topDb, { min: 0 }, 'amplitudeToDB topDb');
  const multiplier = stype === 'power' ? 10 : 20;
  return tidy(() => {
    // multiplier log10(v) = (multiplier / ln 10) ln(v)
    const db = clamp(x, amin).log().mul(multiplier / Math.LN10).sub(multiplier * Math.log10(Math.max(amin, ref)));
    if (topDb === null) return db;
    const packed = x.ndim > 2 ? x.shape.slice(-3).reduce((a, b) => a * b, 1) : x.numel;
    const flat = reshape(db, [-1, packed]);
    return reshape(maximum(flat, max(flat, -1, true).sub(topDb)), x.shape);
  });
}
